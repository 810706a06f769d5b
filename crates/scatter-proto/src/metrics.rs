//! Request timings in the Prometheus text format, shared by the coordinator's and the hosts'
//! `/metrics` endpoints.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Count and total time of requests, per route.
#[derive(Debug, Default)]
pub struct RequestTimes(Mutex<BTreeMap<String, (u64, f64)>>);

impl RequestTimes {
    /// Records one request to `route` (the route's pattern, not the concrete path).
    pub fn record(&self, route: &str, took: Duration) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(route.to_owned()).or_default();
        e.0 += 1;
        e.1 += took.as_secs_f64();
    }

    /// `scatter_http_request_duration_seconds` as a Prometheus summary (sum and count).
    pub fn render(&self) -> String {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from(
            "# HELP scatter_http_request_duration_seconds Time spent serving requests, per route.\n\
             # TYPE scatter_http_request_duration_seconds summary\n",
        );
        for (route, (count, sum)) in m.iter() {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "scatter_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum:.6}");
            let _ = writeln!(out, "scatter_http_request_duration_seconds_count{{route=\"{route}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sum_and_count_per_route() {
        let t = RequestTimes::default();
        t.record("/v1/a", Duration::from_millis(500));
        t.record("/v1/a", Duration::from_millis(250));
        t.record("/shards/{id}", Duration::from_millis(1));
        let text = t.render();
        assert!(text.contains("scatter_http_request_duration_seconds_sum{route=\"/v1/a\"} 0.750000"), "{text}");
        assert!(text.contains("scatter_http_request_duration_seconds_count{route=\"/v1/a\"} 2"), "{text}");
        assert!(text.contains("route=\"/shards/{id}\""), "{text}");
    }
}
