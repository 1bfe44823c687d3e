//! CAP 1.2 (OASIS Common Alerting Protocol): each change of a number is one immutable
//! message. A publication is an `Alert`, a correction an `Update`, a retirement (or the end
//! of the outage that retires it) a `Cancel`; the last two reference the earlier messages
//! about the same number. Historical demonstration data is sent with status `Exercise`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::atom::{describe, escape};
use super::ChangeEvent;
use crate::atlas::Atlas;
use crate::store::change_kind;

/// The `sender` of every message.
pub const SENDER: &str = "relai@relai.example";

/// The identifier of the message for a change.
pub fn identifier(seq: i64) -> String {
    format!("relai-change-{seq}")
}

/// The change a message identifier names.
pub fn parse_identifier(identifier: &str) -> Option<i64> {
    identifier
        .strip_prefix("relai-change-")?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// CAP times carry a numeric offset, never `Z`.
pub fn cap_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// Whether a change gives a CAP message (changes of numbers only).
pub fn is_cap(kind: &str) -> bool {
    matches!(
        kind,
        change_kind::NUMBER_PUBLISHED
            | change_kind::NUMBER_CORRECTED
            | change_kind::NUMBER_RETIRED
            | change_kind::NUMBER_SUPERSEDED
    )
}

fn msg_type(kind: &str) -> &'static str {
    match kind {
        change_kind::NUMBER_PUBLISHED => "Alert",
        change_kind::NUMBER_CORRECTED => "Update",
        _ => "Cancel",
    }
}

/// Renders the message of `event`; `earlier` are the earlier messages' changes about the
/// same number (oldest first), referenced by Updates and Cancels.
pub fn render(atlas: &Atlas, base: &str, event: &ChangeEvent, earlier: &[ChangeEvent]) -> String {
    let d = &event.data;
    let service_code = d["service"].as_str().unwrap_or("");
    let service = atlas
        .service(service_code)
        .map(|s| s.name.as_str())
        .unwrap_or(service_code);
    let display = d["phone"]["display"].as_str().unwrap_or("");
    let e164 = d["phone"]["e164"].as_str().unwrap_or("");
    let kind = event.kind.as_str();
    let (headline, summary) = describe(atlas, event);
    let status = if d["demo"] == Value::Bool(true) {
        "Exercise"
    } else {
        "Actual"
    };
    let sender_name = match &d["provenance"]["kind"] {
        Value::String(k) if k == "official" => d["provenance"]["organization"]["name"]
            .as_str()
            .unwrap_or("Relai"),
        _ => d["provenance"]["verified_by"]["name"]
            .as_str()
            .unwrap_or("Relai"),
    };
    let instruction = if msg_type(kind) == "Cancel" {
        format!("Le numéro {display} n'est plus à composer pour le {service_code} ({service}). Consultez les numéros en vigueur ou composez le {service_code}.")
    } else {
        format!("Si le {service_code} ({service}) ne répond pas, appelez le {display}.")
    };
    let mut x = String::with_capacity(2048);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n");
    let _ = writeln!(x, "  <identifier>{}</identifier>", identifier(event.seq));
    let _ = writeln!(x, "  <sender>{SENDER}</sender>");
    let _ = writeln!(x, "  <sent>{}</sent>", cap_time(event.at));
    let _ = writeln!(x, "  <status>{status}</status>");
    let _ = writeln!(x, "  <msgType>{}</msgType>", msg_type(kind));
    x.push_str("  <scope>Public</scope>\n");
    if status == "Exercise" {
        x.push_str(
            "  <note>Démonstration historique (panne du 2 juin 2021) : ne pas composer.</note>\n",
        );
    }
    if msg_type(kind) != "Alert" && !earlier.is_empty() {
        let refs: Vec<String> = earlier
            .iter()
            .map(|e| format!("{SENDER},{},{}", identifier(e.seq), cap_time(e.at)))
            .collect();
        let _ = writeln!(x, "  <references>{}</references>", refs.join(" "));
    }
    x.push_str("  <info>\n    <language>fr-FR</language>\n    <category>Infra</category>\n");
    let _ = writeln!(
        x,
        "    <event>{}</event>",
        escape(&format!(
            "Numéro de substitution – {service} ({service_code})"
        ))
    );
    let response = if msg_type(kind) == "Cancel" {
        "AllClear"
    } else {
        "Execute"
    };
    let _ = writeln!(x, "    <responseType>{response}</responseType>");
    x.push_str("    <urgency>Immediate</urgency>\n    <severity>Moderate</severity>\n    <certainty>Observed</certainty>\n");
    let _ = writeln!(x, "    <effective>{}</effective>", cap_time(event.at));
    if let Some(until) = d["valid_until"]
        .as_str()
        .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
    {
        let _ = writeln!(
            x,
            "    <expires>{}</expires>",
            cap_time(until.with_timezone(&Utc))
        );
    }
    let _ = writeln!(x, "    <senderName>{}</senderName>", escape(sender_name));
    let _ = writeln!(x, "    <headline>{}</headline>", escape(&headline));
    let _ = writeln!(x, "    <description>{}</description>", escape(&summary));
    let _ = writeln!(x, "    <instruction>{}</instruction>", escape(&instruction));
    let _ = writeln!(
        x,
        "    <web>{}</web>",
        escape(&format!(
            "{base}/v1/numbers/{}",
            d["id"].as_str().unwrap_or("")
        ))
    );
    let _ = writeln!(x, "    <contact>{}</contact>", escape(display));
    let _ = writeln!(x, "    <parameter>\n      <valueName>telephone</valueName>\n      <value>{}</value>\n    </parameter>", escape(e164));
    let _ = writeln!(x, "    <parameter>\n      <valueName>service</valueName>\n      <value>{}</value>\n    </parameter>", escape(service_code));
    x.push_str("    <area>\n");
    let _ = writeln!(
        x,
        "      <areaDesc>{}</areaDesc>",
        escape(d["territory"]["name"].as_str().unwrap_or("France"))
    );
    let code = d["territory"]["code"].as_str().unwrap_or("");
    let geocode = match d["territory"]["kind"].as_str() {
        Some("commune") => Some(("INSEE", code)),
        Some("departement") => Some(("INSEE-DEP", code)),
        _ => None,
    };
    if let Some((name, value)) = geocode {
        let _ = writeln!(x, "      <geocode>\n        <valueName>{name}</valueName>\n        <value>{}</value>\n      </geocode>", escape(value));
    }
    x.push_str("    </area>\n  </info>\n</alert>\n");
    x
}

/// The Atom feed listing the messages, newest first.
pub fn feed(
    atlas: &Atlas,
    base: &str,
    events: &[ChangeEvent],
    before: Option<i64>,
    next_before: Option<i64>,
) -> String {
    let base_x = escape(base);
    let updated = events
        .first()
        .map(|e| e.at)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let mut out = String::with_capacity(1024 + events.len() * 500);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"fr\">\n");
    out.push_str("  <id>tag:relai.example,2026:cap</id>\n  <title>Relai – messages CAP des numéros de substitution</title>\n");
    let _ = writeln!(
        out,
        "  <updated>{}</updated>",
        updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let self_href = match before {
        Some(b) => format!("{base_x}/v1/cap/feed.atom?before={b}"),
        None => format!("{base_x}/v1/cap/feed.atom"),
    };
    let _ = writeln!(
        out,
        "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{self_href}\"/>"
    );
    if let Some(next) = next_before {
        let _ = writeln!(out, "  <link rel=\"next\" type=\"application/atom+xml\" href=\"{base_x}/v1/cap/feed.atom?before={next}\"/>");
    }
    out.push_str("  <author><name>Relai</name></author>\n");
    for e in events {
        let (title, summary) = describe(atlas, e);
        let href = format!("{base_x}/v1/cap/alerts/{}.xml", identifier(e.seq));
        out.push_str("  <entry>\n");
        let _ = writeln!(out, "    <id>tag:relai.example,2026:cap:{}</id>", e.seq);
        let _ = writeln!(out, "    <title>{}</title>", escape(&title));
        let _ = writeln!(
            out,
            "    <updated>{}</updated>",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let _ = writeln!(
            out,
            "    <link rel=\"alternate\" type=\"application/cap+xml\" href=\"{href}\"/>"
        );
        let _ = writeln!(out, "    <category term=\"{}\"/>", msg_type(&e.kind));
        let _ = writeln!(
            out,
            "    <summary type=\"text\">{}</summary>",
            escape(&summary)
        );
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_times() {
        assert_eq!(parse_identifier(&identifier(42)), Some(42));
        assert_eq!(parse_identifier("relai-change-0"), None);
        assert_eq!(parse_identifier("other-1"), None);
        let t = DateTime::parse_from_rfc3339("2021-06-02T18:45:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(cap_time(t), "2021-06-02T18:45:00+00:00");
        assert_eq!(msg_type(change_kind::NUMBER_SUPERSEDED), "Cancel");
        assert!(!is_cap(change_kind::OUTAGE_DECLARED));
    }
}
