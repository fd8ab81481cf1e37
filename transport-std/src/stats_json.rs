//! The broker's stats table as JSON, in one shape for every reader:
//! `flagpost stats --json` and the HTTP address's `/stats.json`.

use flagpost_core::broker::Stats;

/// One object per entry of the table, in its order: `{"name":
/// "flagpost_datagrams_total", "labels": {"kind": "status"}, "type":
/// "counter", "value": 5}` (`labels` null for an unlabelled entry; `type`
/// `counter` or `gauge`). An unlabelled entry beside labelled ones of its
/// name is their sum.
pub fn entries(stats: &Stats) -> serde_json::Value {
    let mut entries = Vec::new();
    stats.visit(|_, m, v| {
        let labels = m.label.map(|(k, l)| serde_json::json!({ k: l }));
        entries.push(serde_json::json!({
            "name": m.name, "labels": labels, "value": v,
            "type": if m.gauge { "gauge" } else { "counter" },
        }));
    });
    serde_json::Value::Array(entries)
}
