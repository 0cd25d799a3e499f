// Package election elects one leader per role (sampler, topology, ...) among any number
// of candidates, with a fencing token per term, on the otlp_leases KV bucket.
//
// # Mechanism
//
// The role's key (events.LeaseKey(role), e.g. "sampler") lives in otlp_leases, whose
// bucket TTL is the lease TTL (--lease-ttl, default 5s, minimum 1s). A candidate
// campaigns with a KV Create, which succeeds only when the key is vacant. The winner
// renews with a revision-checked Update every TTL/3; a value not renewed within the TTL
// expires and every watcher sees the expiry marker. Candidates watch the key, so a
// deletion or expiry starts a campaign at once (there is no polling loop; a safety
// check runs only if an expected expiry event never arrives). The lease code is shared
// with pkg/lock; see pkg/lease.
//
// # Terms and fencing
//
// Each win is a Term with a Token: the KV revision of the winning Create. JetStream
// revisions only increase, so tokens strictly increase from term to term. Term.Ctx is
// cancelled as soon as leadership is lost or may be lost:
//
//   - a renewal or the watch shows the key was taken or deleted;
//   - no renewal was confirmed within TTL - Margin (Margin defaults to max(TTL/5, 300ms))
//     of sending it, so the leader stops before its lease can expire in the store and
//     another candidate can win — at no instant do two candidates hold a live term;
//   - the candidate resigns (Resign, Stop, or the end of Run's context).
//
// A clean shutdown resigns: the term context is cancelled, Run waits for the leader
// work to return, then deletes the key with a revision check
// (Delete(key, LastRevision(rev))), and the next candidate wins within a round trip
// instead of waiting for the TTL.
//
// Every win and loss is published as events.LeaderChange on <root>.events.leader.elected
// and <root>.events.leader.lost (captured by the OTLP_EVENTS stream), with the reason a
// term ended: resigned, renewal-failed, lease-lost or connection-closed.
//
// # Using it in a service (sampler, topology)
//
// Run the election from a goroutine started by the service's OnStart hook, once the
// contract's buckets exist, and do leader work only inside the lead callback, bounded by
// the term's context:
//
//	go func() {
//		b, err := contract.Buckets(ctx) // ctx: cancelled by OnStop
//		if err != nil {
//			return
//		}
//		e, err := election.NewKV(nc, b.Leases, election.Config{
//			Role:       events.ServiceSampler,
//			ID:         settings.Instance,
//			Namespace:  ns,
//			Registerer: reg,
//		}, log)
//		if err != nil {
//			log.Error("election", "err", err)
//			return
//		}
//		_ = e.Run(ctx, func(t election.Term) {
//			// Leader work until t.Ctx is done. Stamp t.Token on every decision written
//			// (e.g. into otlp_sampling) so readers can drop writes from an older term.
//			computeDecisions(t.Ctx, t.Token)
//		})
//	}()
//
// OnStop cancels ctx and waits for that goroutine: Run then resigns, so a follower takes
// over at once. Alternatively call Start(lead) from OnStart and Stop(ctx) from OnStop.
//
// Followers keep warm state (watch the inputs, compute nothing authoritative) so that a
// failover is cheap. IsLeader and Current report this candidate's state at any moment;
// Leader (or ReadLeader on a lease) reads who leads from the store, and Config.OnLeader
// reports changes of the observed leader without polling.
//
// Run waits for lead to return before campaigning again, so a candidate never runs two
// terms at once; lead must therefore return promptly once t.Ctx is done.
//
// For tests, build the candidate with New on a lease from lease.NewMemoryStore, which
// behaves like the bucket (TTL, markers, watch) without NATS.
package election
