package balance

// strategies is the strategy table, the default first: --balance-strategy's values,
// validation and help, the load-aware rebuilds and Build all read it. A new strategy is
// one file strategy_<name>.go (its Strategy constant, a Dealer and a Definition) and
// one line here.
var strategies = []Definition{
	boundedLoad,
	consistentHash,
	roundRobin,
	weightedRoundRobin,
	leastConnections,
	intelligent,
}
