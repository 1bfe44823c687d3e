//! Lookup answers rendered once and served many times.
//!
//! In a crisis nearly every read is `GET /v1/lookup?postcode=`, over a few thousand
//! postcodes. Each snapshot keeps the rendered answer of every postcode asked so far (JSON
//! and text, with their ETags); a request splices the snapshot time into it and copies
//! bytes. A new snapshot carries over every answer that no applied change reaches, so a
//! publication in Gironde leaves the rest of the country's answers warm.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::atlas::Atlas;
use crate::directory::{chain, places_for_postcode};
use crate::domain::Territory;
use crate::lookup::{self, LookupResponse};

/// Postcodes by position, which postcodes each territory reaches, and how much memory
/// the rendered answers may take.
#[derive(Debug)]
pub struct PostcodeIndex {
    position: HashMap<String, usize>,
    /// For each territory, the positions of the postcodes with a commune inside it.
    reach: HashMap<Territory, Vec<usize>>,
    budget: Arc<CacheBudget>,
}

/// The bytes the rendered answers of all snapshots may hold together: beyond it an
/// answer is rendered for its request and not kept, so a dense directory never makes the
/// process grow without bound.
#[derive(Debug)]
pub struct CacheBudget {
    limit: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes`, or refuses if that would exceed the limit.
    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + bytes <= self.limit).then_some(used + bytes)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The default of the answer cache budget, in MiB.
pub const DEFAULT_ANSWER_CACHE_MB: usize = 96;

impl PostcodeIndex {
    pub fn build(atlas: &Atlas) -> PostcodeIndex {
        Self::with_budget(atlas, DEFAULT_ANSWER_CACHE_MB << 20)
    }

    /// [`PostcodeIndex::build`] with a cache budget in bytes.
    pub fn with_budget(atlas: &Atlas, budget_bytes: usize) -> PostcodeIndex {
        let mut codes: Vec<&str> = atlas.postcode_codes().collect();
        codes.sort_unstable();
        let mut reach: HashMap<Territory, Vec<usize>> = HashMap::new();
        for (i, code) in codes.iter().enumerate() {
            let mut territories: HashSet<Territory> = HashSet::new();
            for place in places_for_postcode(atlas, code).unwrap_or_default() {
                territories.extend(chain(atlas, place));
                // The commune itself too when the postcode names an arrondissement: a
                // number of the whole city reaches it.
                if let Ok(t) = Territory::parse("commune", &place.commune.insee) {
                    territories.insert(t);
                }
            }
            for t in territories {
                reach.entry(t).or_default().push(i);
            }
        }
        PostcodeIndex {
            position: codes
                .iter()
                .enumerate()
                .map(|(i, c)| ((*c).to_owned(), i))
                .collect(),
            reach,
            budget: Arc::new(CacheBudget {
                limit: budget_bytes,
                used: AtomicUsize::new(0),
            }),
        }
    }

    pub fn budget(&self) -> &Arc<CacheBudget> {
        &self.budget
    }

    pub fn len(&self) -> usize {
        self.position.len()
    }

    pub fn is_empty(&self) -> bool {
        self.position.is_empty()
    }

    pub fn position(&self, postcode: &str) -> Option<usize> {
        self.position.get(postcode).copied()
    }

    /// The postcodes whose answer a change at `territory` can alter.
    pub fn reached_by(&self, territory: &Territory) -> &[usize] {
        self.reach.get(territory).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The rendered answers of one snapshot, one slot per postcode, filled on first use.
/// A slot is a plain lock: creating and dropping thousands of them with every snapshot
/// must cost next to nothing (an `ArcSwap` pays for its lock-free reads when dropped).
#[derive(Debug)]
pub struct AnswerCache {
    slots: Arc<[Slot]>,
}

type Slot = RwLock<Option<Arc<RenderedAnswer>>>;

fn read(slot: &Slot) -> Option<Arc<RenderedAnswer>> {
    slot.read().unwrap_or_else(|p| p.into_inner()).clone()
}

impl AnswerCache {
    pub fn empty(len: usize) -> AnswerCache {
        AnswerCache {
            slots: (0..len).map(|_| RwLock::new(None)).collect(),
        }
    }

    /// The cache of the next snapshot: every answer kept but those of the postcodes a
    /// change at one of `touched` reaches.
    pub fn carry_over(&self, index: &PostcodeIndex, touched: &HashSet<Territory>) -> AnswerCache {
        if touched.is_empty() {
            // Nothing public changed: the very same answers hold.
            return AnswerCache {
                slots: self.slots.clone(),
            };
        }
        if touched.contains(&Territory::National) {
            return AnswerCache::empty(self.slots.len());
        }
        let mut stale = vec![false; self.slots.len()];
        for t in touched {
            for &i in index.reached_by(t) {
                stale[i] = true;
            }
        }
        AnswerCache {
            slots: self
                .slots
                .iter()
                .zip(stale)
                .map(|(slot, stale)| RwLock::new(if stale { None } else { read(slot) }))
                .collect(),
        }
    }

    /// The answer at `position`, rendered by `render` if it is not there yet or no longer
    /// holds at `now` (a number entered or left its validity since).
    pub fn get_or_render(
        &self,
        position: usize,
        now: DateTime<Utc>,
        budget: &Arc<CacheBudget>,
        render: impl FnOnce() -> RenderedAnswer,
    ) -> Arc<RenderedAnswer> {
        let slot = &self.slots[position];
        if let Some(answer) = read(slot) {
            if answer.holds_at(now) {
                return answer;
            }
        }
        let mut fresh = render();
        let size = fresh.size();
        if budget.reserve(size) {
            fresh.accounted = Some((budget.clone(), size));
            let fresh = Arc::new(fresh);
            *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
            fresh
        } else {
            // Over budget: served, not kept.
            Arc::new(fresh)
        }
    }

    /// How many answers are rendered (for tests and metrics).
    pub fn rendered(&self) -> usize {
        self.slots.iter().filter(|s| read(s).is_some()).count()
    }
}

/// One lookup answer, as JSON and as text, with everything but the snapshot time.
#[derive(Debug)]
pub struct RenderedAnswer {
    /// The JSON up to the value of `generated_at`.
    json_head: Bytes,
    /// The JSON after the value of `generated_at`.
    json_tail: Bytes,
    json_etag: HeaderValue,
    /// The text answer without its last line (the time of the data).
    text_body: Bytes,
    text_etag: HeaderValue,
    /// The answer was computed for a time before this instant, when a number of it enters
    /// or leaves its validity.
    holds_until: Option<DateTime<Utc>>,
    /// The budget this answer counts against while it is kept, and its size.
    accounted: Option<(Arc<CacheBudget>, usize)>,
}

impl Drop for RenderedAnswer {
    fn drop(&mut self) {
        if let Some((budget, size)) = &self.accounted {
            budget.release(*size);
        }
    }
}

impl RenderedAnswer {
    /// Renders `answer`, which holds until `holds_until`.
    pub fn new(answer: &LookupResponse, holds_until: Option<DateTime<Utc>>) -> RenderedAnswer {
        let json = serde_json::to_string(answer).unwrap_or_default();
        let (json_head, json_tail) = split_at_generated_at(&json);
        let text_body = lookup::to_text_body(answer);
        RenderedAnswer {
            json_etag: weak_etag(json_tail.as_bytes()),
            text_etag: weak_etag(text_body.as_bytes()),
            json_head: Bytes::from(json_head),
            json_tail: Bytes::from(json_tail),
            text_body: Bytes::from(text_body),
            holds_until,
            accounted: None,
        }
    }

    /// The memory it holds, roughly.
    pub fn size(&self) -> usize {
        self.json_head.len() + self.json_tail.len() + self.text_body.len() + 256
    }

    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.holds_until.is_none_or(|until| now < until)
    }

    /// The JSON answer with `generated_at`, given as JSON (see
    /// [`crate::directory::Directory::built_at_json`]). No byte is copied: the parts are
    /// shared and written out one after the other.
    pub fn json(&self, generated_at_json: &Bytes) -> Spliced {
        Spliced::new([
            self.json_head.clone(),
            generated_at_json.clone(),
            self.json_tail.clone(),
        ])
    }

    /// The weak ETag of the JSON answer: the same while the answer says the same thing,
    /// whatever its `generated_at`.
    pub fn json_etag(&self) -> &HeaderValue {
        &self.json_etag
    }

    /// The text answer, ending with `footer`, the time of the data (see
    /// [`crate::lookup::text_footer`]).
    pub fn text(&self, footer: &Bytes) -> Spliced {
        Spliced::new([self.text_body.clone(), footer.clone(), Bytes::new()])
    }

    pub fn text_etag(&self) -> &HeaderValue {
        &self.text_etag
    }
}

/// A response body made of shared parts, written one after the other.
pub struct Spliced {
    parts: [Bytes; 3],
    next: usize,
    len: u64,
}

impl Spliced {
    pub fn new(parts: [Bytes; 3]) -> Spliced {
        let len = parts.iter().map(|p| p.len() as u64).sum();
        Spliced {
            parts,
            next: 0,
            len,
        }
    }

    /// The whole body in one buffer (tests, and callers that need it whole).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts.concat()
    }
}

impl MessageBody for Spliced {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        while self.next < self.parts.len() {
            let i = self.next;
            self.next += 1;
            let part = std::mem::take(&mut self.parts[i]);
            if !part.is_empty() {
                return Poll::Ready(Some(Ok(part)));
            }
        }
        Poll::Ready(None)
    }
}

/// A weak validator of the substance of an answer (everything but its time).
pub fn weak_etag(substance: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(substance);
    HeaderValue::from_str(&format!("W/\"{}\"", hex::encode(&digest[..12])))
        .unwrap_or_else(|_| HeaderValue::from_static("W/\"0\""))
}

/// Splits serialized JSON around the value of its top-level `generated_at`; the key comes
/// after `postcode` or `insee` only, whose values are digits and letters.
fn split_at_generated_at(json: &str) -> (String, String) {
    const KEY: &str = "\"generated_at\":\"";
    let Some(start) = json.find(KEY) else {
        return (json.to_owned(), String::new());
    };
    let value_start = start + KEY.len() - 1;
    let Some(len) = json[value_start + 1..].find('"') else {
        return (json.to_owned(), String::new());
    };
    let value_end = value_start + 1 + len + 1;
    (json[..value_start].to_owned(), json[value_end..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_around_the_time_value() {
        let json = r#"{"postcode":"33000","generated_at":"2026-11-25T10:00:00.123456Z","demo":false,"communes":[]}"#;
        let (head, tail) = split_at_generated_at(json);
        assert_eq!(head, r#"{"postcode":"33000","generated_at":"#);
        assert_eq!(tail, r#","demo":false,"communes":[]}"#);
    }

    fn answer() -> RenderedAnswer {
        RenderedAnswer::new(
            &LookupResponse {
                postcode: Some("33000".to_owned()),
                insee: None,
                generated_at: chrono::Utc::now(),
                demo: false,
                notice: None,
                communes: Vec::new(),
            },
            None,
        )
    }

    #[test]
    fn answers_are_kept_within_the_budget_and_released_when_dropped() {
        let size = answer().size();
        let budget = Arc::new(CacheBudget {
            limit: size + size / 2,
            used: AtomicUsize::new(0),
        });
        let cache = AnswerCache::empty(3);
        let now = chrono::Utc::now();
        let first = cache.get_or_render(0, now, &budget, answer);
        assert_eq!(budget.used(), size);
        // The same slot again: served from the cache.
        assert!(Arc::ptr_eq(
            &first,
            &cache.get_or_render(0, now, &budget, answer)
        ));
        // Another: over the budget, served but not kept.
        let second = cache.get_or_render(1, now, &budget, answer);
        assert!(!Arc::ptr_eq(
            &second,
            &cache.get_or_render(1, now, &budget, answer)
        ));
        assert_eq!(cache.rendered(), 1);
        assert_eq!(budget.used(), size);
        drop(first);
        drop(cache);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn weak_etags_differ_with_the_substance() {
        assert_ne!(weak_etag(b"a"), weak_etag(b"b"));
        assert!(weak_etag(b"a").to_str().unwrap().starts_with("W/\""));
    }
}
