//! Prometheus metrics: what the proxies carried, by direction and transport.
use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    /// `inbound` or `outbound`, from the enrolled pod's point of view.
    pub direction: String,
    /// `hbone` (mTLS) or `plaintext`.
    pub transport: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub opened: Family<ConnLabels, Counter>,
    pub active: Family<ConnLabels, Gauge>,
    /// Bytes the pod sent.
    pub sent: Family<ConnLabels, Counter>,
    /// Bytes the pod received.
    pub received: Family<ConnLabels, Counter>,
    pub pods: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("podlock");
        let opened = Family::<ConnLabels, Counter>::default();
        let active = Family::<ConnLabels, Gauge>::default();
        let sent = Family::<ConnLabels, Counter>::default();
        let received = Family::<ConnLabels, Counter>::default();
        let pods = Gauge::default();
        registry.register(
            "connections_opened",
            "Connections proxied for enrolled pods",
            opened.clone(),
        );
        registry.register("connections_active", "Connections open now", active.clone());
        registry.register("sent_bytes", "Bytes enrolled pods sent", sent.clone());
        registry.register(
            "received_bytes",
            "Bytes enrolled pods received",
            received.clone(),
        );
        registry.register("enrolled_pods", "Pods this agent serves", pods.clone());
        Self {
            registry: Arc::new(registry),
            opened,
            active,
            sent,
            received,
            pods,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_labelled_counters() {
        let m = Metrics::default();
        let labels = ConnLabels {
            direction: "outbound".into(),
            transport: "hbone".into(),
        };
        m.opened.get_or_create(&labels).inc();
        m.sent.get_or_create(&labels).inc_by(42);
        let text = m.encode();
        assert!(
            text.contains(
                r#"podlock_connections_opened_total{direction="outbound",transport="hbone"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"podlock_sent_bytes_total{direction="outbound",transport="hbone"} 42"#),
            "{text}"
        );
    }
}
