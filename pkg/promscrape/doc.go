// Package promscrape reads an OpenTelemetry Collector's own Prometheus metrics (its
// internal telemetry endpoint, :8888/metrics by default) and turns two consecutive
// scrapes into the collector's load report, so that an unmodified collector can be a
// load-reporting otelfleet fleet member (`otelfleet agent --metrics-url`).
//
// [Scraper.Scrape] fetches the page and [Parse] decodes it with prometheus/common's
// expfmt (Prometheus text format 0.0.4 and OpenMetrics 1.0, chosen by the response's
// Content-Type; the scraper asks for the text format, whose parser is far faster), then
// sums, over every label combination, the families
//
//	otelcol_receiver_accepted_spans   counter  spans accepted by receivers
//	otelcol_receiver_refused_spans    counter  spans refused by receivers
//	otelcol_exporter_queue_size       gauge    batches waiting in exporter queues
//	otelcol_exporter_queue_capacity   gauge    exporter queue capacity
//	otelcol_process_cpu_seconds       counter  CPU time of the collector process
//	otelcol_process_memory_rss        gauge    resident memory of the process (bytes)
//
// each accepted with or without the "_total" suffix (collectors that export through the
// OpenTelemetry Go SDK add it to counters) and the "_bytes" unit suffix, and with dots
// in place of underscores.
//
// [Source] implements loadreport.Source: qps is the accepted-spans counter's rate between
// scrapes, error_rate is refused / (accepted + refused) over the same interval, cpu is
// the cpu-seconds counter's rate divided by the number of CPUs of the host the agent runs
// on (runtime.NumCPU, overridable), so it means "share of the whole machine" as
// everywhere in otelfleet — this assumes the agent runs beside the collector (a
// sidecar or the same host); memory is the RSS gauge, queue_depth the summed queue-size
// gauge, avg_latency_ms follows from Little's law (queue / qps; approximate, since the
// collector counts its queue in batches or items, whichever its sizer uses, not
// spans), and capacity is configured. A counter that went down between scrapes was reset (the collector
// restarted): its increase is taken to be its new value, as Prometheus' rate() does.
// The collector exports no received-bytes or per-service figures, so bytes_per_sec is 0
// and no services are listed.
package promscrape
