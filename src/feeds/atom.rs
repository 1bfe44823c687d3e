//! The Atom 1.0 feed (RFC 4287) of the public changes, with French titles a person can
//! read, stable entry ids and paging back through older changes.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use super::ChangeEvent;
use crate::atlas::Atlas;
use crate::store::change_kind;

/// Entries per page.
pub const PAGE: i64 = 50;

/// Escapes text for XML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 forbids are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn service_name(atlas: &Atlas, code: &str) -> String {
    atlas
        .service(code)
        .map(|s| format!("{code} {}", s.name))
        .unwrap_or_else(|| code.to_owned())
}

/// The French title and summary of a change.
pub fn describe(atlas: &Atlas, event: &ChangeEvent) -> (String, String) {
    let d = &event.data;
    let demo = if d["demo"] == Value::Bool(true) {
        "[DÉMONSTRATION] "
    } else {
        ""
    };
    let place = d["territory"]["name"].as_str().unwrap_or("");
    let (title, summary) = if event.kind.starts_with("number.") {
        let service = service_name(atlas, d["service"].as_str().unwrap_or(""));
        let phone = d["phone"]["display"].as_str().unwrap_or("");
        let label = d["label"].as_str().unwrap_or("");
        let verb = match event.kind.as_str() {
            change_kind::NUMBER_PUBLISHED => "Numéro publié",
            change_kind::NUMBER_CORRECTED => "Numéro corrigé",
            change_kind::NUMBER_SUPERSEDED => "Numéro remplacé",
            _ => "Numéro retiré",
        };
        let mut summary = format!("{verb} pour le {service} ({place}) : {phone} ({label}).");
        if let Some(reason) = d["retire_reason"].as_str() {
            let _ = write!(summary, " Motif : {reason}");
        }
        (format!("{verb} – {service}, {place} : {phone}"), summary)
    } else {
        let services: Vec<String> = d["services"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(|c| service_name(atlas, c))
                    .collect()
            })
            .unwrap_or_default();
        let verb = if event.kind == change_kind::OUTAGE_DECLARED {
            "Panne déclarée"
        } else {
            "Fin de panne"
        };
        let description = d["description"].as_str().unwrap_or("");
        (
            format!("{verb} – {}, {place}", services.join(", ")),
            format!("{verb} : {}. {description}", services.join(", ")),
        )
    };
    (format!("{demo}{title}"), format!("{demo}{summary}"))
}

/// The link of the entity a change is about.
fn entity_link(base: &str, event: &ChangeEvent) -> String {
    let id = event.data["id"].as_str().unwrap_or("");
    if event.kind.starts_with("number.") {
        format!("{base}/v1/numbers/{id}")
    } else {
        format!("{base}/v1/outages?status=active#{id}")
    }
}

/// Renders a page of the feed: `events` newest first; `next_before` pages back.
pub fn render(
    atlas: &Atlas,
    base: &str,
    events: &[ChangeEvent],
    before: Option<i64>,
    next_before: Option<i64>,
) -> String {
    let updated = events
        .first()
        .map(|e| e.at)
        .unwrap_or_else(|| DateTime::<Utc>::UNIX_EPOCH);
    let base_x = escape(base);
    let self_href = match before {
        Some(b) => format!("{base_x}/v1/feed.atom?before={b}"),
        None => format!("{base_x}/v1/feed.atom"),
    };
    let mut out = String::with_capacity(1024 + events.len() * 600);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"fr\">\n");
    out.push_str("  <id>tag:relai.example,2026:changes</id>\n");
    out.push_str("  <title>Relai – numéros d'urgence de substitution</title>\n");
    out.push_str("  <subtitle>Numéros de substitution publiés, corrigés et retirés, pannes déclarées et terminées.</subtitle>\n");
    let _ = writeln!(out, "  <updated>{}</updated>", rfc3339(updated));
    let _ = writeln!(
        out,
        "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{self_href}\"/>"
    );
    let _ = writeln!(
        out,
        "  <link rel=\"alternate\" type=\"text/html\" href=\"{base_x}/\"/>"
    );
    if let Some(next) = next_before {
        let _ = writeln!(out, "  <link rel=\"next\" type=\"application/atom+xml\" href=\"{base_x}/v1/feed.atom?before={next}\"/>");
    }
    out.push_str("  <author><name>Relai</name></author>\n");
    for event in events {
        let (title, summary) = describe(atlas, event);
        out.push_str("  <entry>\n");
        let _ = writeln!(
            out,
            "    <id>tag:relai.example,2026:change:{}</id>",
            event.seq
        );
        let _ = writeln!(out, "    <title>{}</title>", escape(&title));
        let _ = writeln!(out, "    <updated>{}</updated>", rfc3339(event.at));
        let _ = writeln!(
            out,
            "    <link rel=\"alternate\" href=\"{}\"/>",
            escape(&entity_link(base, event))
        );
        let _ = writeln!(out, "    <category term=\"{}\"/>", escape(&event.kind));
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
    fn escapes_markup_and_drops_forbidden_characters() {
        assert_eq!(escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(
            escape("Sapeurs-pompiers – Gironde"),
            "Sapeurs-pompiers – Gironde"
        );
    }
}
