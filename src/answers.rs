//! Lookup answers rendered once and served many times.
//!
//! In a crisis nearly every read is `GET /v1/lookup?postcode=`, over a few thousand
//! postcodes. The answer of every postcode asked so far is kept rendered, as pieces that
//! share the numbers' JSON with the snapshot, with its weak ETag; a request copies the
//! pieces and the snapshot time into one buffer. The cache is shared by the snapshots of a
//! lineage and an answer holds until a change reaches its postcode, so a publication in
//! Gironde leaves the rest of the country's answers warm.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::HeaderValue;
use actix_web::web::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::atlas::Atlas;
use crate::directory::{chain, places_for_postcode};
use crate::domain::Territory;
use crate::lookup::{LookupCommune, LookupResponse, LookupService, ServiceStatus};
use crate::public_number::PublicNumber;

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

/// The rendered answers of one lineage of snapshots (a snapshot loaded from storage and
/// the ones made from it by applying changes), one slot per postcode, filled on first
/// use and shared by every snapshot of the lineage.
///
/// Each slot remembers the sequence of the last change that reached its postcode
/// (`touched`); an answer rendered from the snapshot at sequence R holds for a snapshot at
/// sequence S when no change reached it since the older of the two: `touched <= min(R, S)`.
/// So a new snapshot costs one store per postcode its changes reach, and requests still on
/// the previous snapshot keep their answers.
#[derive(Debug)]
pub struct AnswerCache {
    slots: Box<[Slot]>,
}

#[derive(Debug, Default)]
struct Slot {
    answer: RwLock<Option<Arc<RenderedAnswer>>>,
    touched: AtomicI64,
}

impl Slot {
    fn read(&self) -> Option<Arc<RenderedAnswer>> {
        self.answer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn holds(&self, answer: &RenderedAnswer, seq: i64, now: DateTime<Utc>) -> bool {
        self.touched.load(Ordering::Acquire) <= answer.seq.min(seq) && answer.holds_at(now)
    }
}

impl AnswerCache {
    pub fn new(len: usize) -> AnswerCache {
        AnswerCache {
            slots: (0..len).map(|_| Slot::default()).collect(),
        }
    }

    /// Records that the change at `seq` reaches every postcode of `touched` territories:
    /// their answers rendered before it no longer hold for the snapshots from `seq` on.
    /// Called before the snapshot at `seq` is served.
    pub fn touch(&self, index: &PostcodeIndex, touched: &HashSet<Territory>, seq: i64) {
        if touched.contains(&Territory::National) {
            (0..self.slots.len()).for_each(|i| self.mark(i, seq));
            return;
        }
        for t in touched {
            for &i in index.reached_by(t) {
                self.mark(i, seq);
            }
        }
    }

    /// Records that the change at `seq` reaches the postcode at `position`.
    fn mark(&self, position: usize, seq: i64) {
        self.slots[position]
            .touched
            .fetch_max(seq, Ordering::AcqRel);
    }

    /// The answer at `position` for the snapshot at `seq`, rendered by `render` if none
    /// holds (none yet, a change reached it, or a number of it entered or left its
    /// validity since). A fresh answer is kept unless a later change already reached it,
    /// or the budget is spent.
    pub fn get_or_render(
        &self,
        position: usize,
        seq: i64,
        now: DateTime<Utc>,
        budget: &Arc<CacheBudget>,
        render: impl FnOnce() -> RenderedAnswer,
    ) -> Arc<RenderedAnswer> {
        let slot = &self.slots[position];
        if let Some(answer) = slot.read() {
            if slot.holds(&answer, seq, now) {
                return answer;
            }
        }
        let mut fresh = render();
        if fresh.seq < slot.touched.load(Ordering::Acquire) {
            // Rendered from a snapshot a newer change already superseded: this request's
            // answer, nobody else's.
            return Arc::new(fresh);
        }
        let size = fresh.size();
        if !budget.reserve(size) {
            // Over budget: served, not kept.
            return Arc::new(fresh);
        }
        fresh.accounted = Some((budget.clone(), size));
        let fresh = Arc::new(fresh);
        let mut kept = slot.answer.write().unwrap_or_else(|p| p.into_inner());
        // Two requests may render the same answer at once; the newer snapshot's stays.
        if kept.as_ref().is_none_or(|k| k.seq <= fresh.seq) {
            *kept = Some(fresh.clone());
        }
        fresh
    }

    /// How many answers hold for the snapshot at `seq` (for tests and metrics).
    pub fn rendered(&self, seq: i64, now: DateTime<Utc>) -> usize {
        self.slots
            .iter()
            .filter(|s| s.read().is_some_and(|a| s.holds(&a, seq, now)))
            .count()
    }
}

/// A part of a rendered JSON answer.
#[derive(Debug)]
enum Piece {
    /// Bytes of the answer's own buffer (`glue`), from..to.
    Glue(u32, u32),
    /// A number's JSON, shared with the snapshot and every other answer listing it.
    Number(PublicNumber),
    /// Text that depends on the catalogue only, shared by every answer (see [`intern`]).
    Shared(&'static String),
    /// The value of `generated_at`: the time of the snapshot that serves the request.
    GeneratedAt,
}

/// One lookup answer, as JSON and as text, with everything but the snapshot time.
///
/// The JSON is kept as a list of pieces: the numbers' JSON, shared with the snapshot, and
/// the answer's own bytes in between. Kept whole, the answers of all 6,310 postcodes of a
/// dense directory would take 300 MB (each lists some 70 numbers); as pieces they take a
/// tenth of that, and a request copies them into one buffer.
#[derive(Debug)]
pub struct RenderedAnswer {
    glue: Box<[u8]>,
    pieces: Box<[Piece]>,
    /// The length of the JSON without the value of `generated_at`.
    json_len: usize,
    json_etag: HeaderValue,
    /// The text answer without its last line (the time of the data), and its ETag:
    /// rendered when first asked for (most clients want JSON).
    text: OnceLock<(Bytes, HeaderValue)>,
    /// The sequence of the snapshot it was rendered from.
    seq: i64,
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
    /// Renders `answer`, computed from the snapshot at `seq`, which holds until
    /// `holds_until`.
    pub fn new(
        answer: &LookupResponse,
        seq: i64,
        holds_until: Option<DateTime<Utc>>,
    ) -> RenderedAnswer {
        let mut json = JsonPieces::default();
        json.response(answer);
        let (glue, pieces) = json.finish();
        let mut rendered = RenderedAnswer {
            json_len: 0,
            json_etag: HeaderValue::from_static("W/\"0\""),
            text: OnceLock::new(),
            glue,
            pieces,
            seq,
            holds_until,
            accounted: None,
        };
        // The validator hashes what the answer says, naming each number by its id and
        // version rather than reading its JSON again: a number's JSON is a function of
        // both, and this is a tenth of the bytes (re-rendered answers are on the write
        // path). The same answer gets the same ETag on every instance.
        let mut substance = Sha256::new();
        let mut json_len = 0;
        for piece in &rendered.pieces {
            match piece {
                Piece::Glue(from, to) => {
                    substance.update(&rendered.glue[*from as usize..*to as usize]);
                    json_len += (to - from) as usize;
                }
                Piece::Number(n) => {
                    substance.update(b"\0number ");
                    substance.update(n.id().as_bytes());
                    substance.update(n.version().to_be_bytes());
                    json_len += n.json_bytes().len();
                }
                Piece::Shared(text) => {
                    substance.update(text.as_bytes());
                    json_len += text.len();
                }
                Piece::GeneratedAt => {}
            }
        }
        rendered.json_len = json_len;
        rendered.json_etag = etag_of(substance.finalize().as_slice());
        rendered
    }

    /// Calls `f` with every part of the JSON in order, `generated_at` for its value.
    fn for_each_part(&self, generated_at: &[u8], mut f: impl FnMut(&[u8])) {
        // The numbers' JSON lies all over the heap: ask for the memory of the ones a few
        // pieces ahead while copying this one, so the fetches overlap.
        const AHEAD: usize = 6;
        for piece in self.pieces.iter().take(AHEAD) {
            prefetch(piece);
        }
        for (i, piece) in self.pieces.iter().enumerate() {
            if let Some(ahead) = self.pieces.get(i + AHEAD) {
                prefetch(ahead);
            }
            match piece {
                Piece::Glue(from, to) => f(&self.glue[*from as usize..*to as usize]),
                Piece::Number(n) => f(n.json_bytes()),
                Piece::Shared(text) => f(text.as_bytes()),
                Piece::GeneratedAt => f(generated_at),
            }
        }
    }

    /// The memory it holds of its own (the numbers' JSON belongs to the snapshot).
    pub fn size(&self) -> usize {
        self.glue.len()
            + self.pieces.len() * std::mem::size_of::<Piece>()
            + std::mem::size_of::<Self>()
            + 128
    }

    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.holds_until.is_none_or(|until| now < until)
    }

    /// The JSON answer with `generated_at`, given as JSON (see
    /// [`crate::directory::Directory::built_at_json`]), as a body that assembles it only
    /// when it is sent (not for a 304).
    pub fn json(self: &Arc<Self>, generated_at_json: &Bytes) -> AnswerBody {
        AnswerBody::Json {
            answer: self.clone(),
            generated_at: generated_at_json.clone(),
        }
    }

    /// The JSON answer in one buffer.
    pub fn json_bytes(&self, generated_at_json: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.json_len + generated_at_json.len());
        self.for_each_part(generated_at_json, |part| out.extend_from_slice(part));
        out.freeze()
    }

    /// The weak ETag of the JSON answer: the same while the answer says the same thing,
    /// whatever its `generated_at`.
    pub fn json_etag(&self) -> &HeaderValue {
        &self.json_etag
    }

    /// The text answer, ending with `footer`, the time of the data (see
    /// [`crate::lookup::text_footer`]), and its weak ETag. `render` gives the text body
    /// (see [`crate::lookup::to_text_body`]) the first time it is asked for.
    pub fn text(
        &self,
        footer: &Bytes,
        render: impl FnOnce() -> String,
    ) -> (AnswerBody, &HeaderValue) {
        let (body, etag) = self.text.get_or_init(|| {
            let body = render();
            let etag = weak_etag(body.as_bytes());
            (Bytes::from(body), etag)
        });
        (
            AnswerBody::Text {
                body: body.clone(),
                footer: footer.clone(),
            },
            etag,
        )
    }
}

/// Hints the processor to load the start of a number's memory (a hint only: no effect on
/// what the program computes).
#[inline]
fn prefetch(piece: &Piece) {
    #[cfg(target_arch = "x86_64")]
    if let Piece::Number(n) = piece {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let at = n.memory().cast::<i8>();
        // SAFETY: a prefetch never faults and reads nothing the program sees; the address
        // is that of a live allocation (the number is held by the answer).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(at);
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = piece;
}

/// Writes a [`LookupResponse`] as serde_json would, byte for byte, keeping each number's
/// JSON as a shared piece and leaving a hole for the value of `generated_at`.
///
/// Text that only depends on the catalogue (a service's code, name and status, the
/// punctuation around the numbers) is "fixed": runs of it are interned once for the
/// process and shared by every answer, so an answer's own bytes are its communes' names
/// and its outages' ids.
#[derive(Default)]
struct JsonPieces {
    glue: Vec<u8>,
    pieces: Vec<Piece>,
    /// Where the glue not yet in a piece starts.
    open: usize,
    /// Fixed text not yet in a piece.
    fixed: String,
}

impl JsonPieces {
    /// Text of this answer only.
    fn raw(&mut self, s: &str) {
        self.flush_fixed();
        self.glue.extend_from_slice(s.as_bytes());
    }

    /// A JSON string of this answer only.
    fn string(&mut self, s: &str) {
        self.flush_fixed();
        // serde_json's own escaping, so that the bytes are those of `to_string`.
        let _ = serde_json::to_writer(&mut self.glue, s);
    }

    /// Text that depends on the catalogue only.
    fn fixed(&mut self, s: &str) {
        self.close_glue();
        self.fixed.push_str(s);
    }

    /// A JSON string that depends on the catalogue only.
    fn fixed_string(&mut self, s: &str) {
        self.close_glue();
        let json = serde_json::to_string(s).unwrap_or_default();
        self.fixed.push_str(&json);
    }

    fn close_glue(&mut self) {
        if self.glue.len() > self.open {
            self.pieces
                .push(Piece::Glue(self.open as u32, self.glue.len() as u32));
            self.open = self.glue.len();
        }
    }

    fn flush_fixed(&mut self) {
        if self.fixed.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.fixed);
        match intern(&text) {
            Some(shared) => self.pieces.push(Piece::Shared(shared)),
            None => {
                self.glue.extend_from_slice(text.as_bytes());
                self.close_glue();
            }
        }
    }

    fn piece(&mut self, piece: Piece) {
        self.flush_fixed();
        self.close_glue();
        self.pieces.push(piece);
    }

    fn key(&mut self, first: bool, key: &str) {
        self.raw(if first { "\"" } else { ",\"" });
        self.raw(key);
        self.raw("\":");
    }

    fn response(&mut self, r: &LookupResponse) {
        self.raw("{");
        let mut first = true;
        if let Some(p) = &r.postcode {
            self.key(first, "postcode");
            self.string(p);
            first = false;
        }
        if let Some(i) = &r.insee {
            self.key(first, "insee");
            self.string(i);
            first = false;
        }
        self.key(first, "generated_at");
        self.piece(Piece::GeneratedAt);
        self.key(false, "demo");
        self.raw(if r.demo { "true" } else { "false" });
        if let Some(n) = &r.notice {
            self.key(false, "notice");
            self.string(n);
        }
        self.key(false, "communes");
        self.raw("[");
        for (i, c) in r.communes.iter().enumerate() {
            if i > 0 {
                self.raw(",");
            }
            self.commune(c);
        }
        self.raw("]}");
    }

    fn commune(&mut self, c: &LookupCommune) {
        self.raw("{\"insee\":");
        self.string(&c.insee);
        self.key(false, "name");
        self.string(&c.name);
        self.key(false, "departement");
        self.raw("{\"code\":");
        self.string(&c.departement.code);
        self.key(false, "name");
        self.string(&c.departement.name);
        self.raw("}");
        if let Some(a) = &c.arrondissement {
            self.key(false, "arrondissement");
            self.raw("{\"insee\":");
            self.string(&a.insee);
            self.key(false, "name");
            self.string(&a.name);
            self.raw("}");
        }
        self.key(false, "services");
        self.raw("[");
        for (i, s) in c.services.iter().enumerate() {
            self.service(s, i == 0);
        }
        self.fixed("]}");
    }

    fn service(&mut self, s: &LookupService, first: bool) {
        self.fixed(if first {
            "{\"service\":"
        } else {
            ",{\"service\":"
        });
        self.fixed_string(&s.service);
        self.fixed(",\"name\":");
        self.fixed_string(&s.name);
        self.fixed(match s.status {
            ServiceStatus::Normal => ",\"status\":\"normal\",\"outage_ids\":[",
            ServiceStatus::Outage => ",\"status\":\"outage\",\"outage_ids\":[",
        });
        for (i, id) in s.outage_ids.iter().enumerate() {
            if i > 0 {
                self.fixed(",");
            }
            self.string(id);
        }
        self.fixed("],\"numbers\":[");
        for (i, n) in s.numbers.iter().enumerate() {
            if i > 0 {
                self.fixed(",");
            }
            self.piece(Piece::Number(n.clone()));
        }
        self.fixed("]}");
    }

    fn finish(mut self) -> (Box<[u8]>, Box<[Piece]>) {
        self.flush_fixed();
        self.close_glue();
        (self.glue.into_boxed_slice(), self.pieces.into_boxed_slice())
    }
}

/// How many runs of fixed text are interned at most. They are made of the catalogue's
/// services and a little punctuation, so a few hundred at most are ever seen; the bound
/// only makes sure the table can never grow without limit.
const MAX_INTERNED: usize = 4096;

/// The process-wide copy of a run of fixed text, made on first use and kept for the life
/// of the process; `None` once the table is full.
fn intern(text: &str) -> Option<&'static String> {
    static TABLE: OnceLock<Mutex<HashMap<String, &'static String>>> = OnceLock::new();
    let mut table = TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(shared) = table.get(text) {
        return Some(shared);
    }
    if table.len() >= MAX_INTERNED {
        return None;
    }
    let shared: &'static String = Box::leak(Box::new(text.to_owned()));
    table.insert(text.to_owned(), shared);
    Some(shared)
}

/// The body of a lookup answer: assembled when it is first polled, so that a 304 or a
/// cancelled request copies nothing.
pub enum AnswerBody {
    Json {
        answer: Arc<RenderedAnswer>,
        generated_at: Bytes,
    },
    Text {
        body: Bytes,
        footer: Bytes,
    },
    Done,
}

impl AnswerBody {
    /// The whole body in one buffer (tests, and callers that need it whole).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            AnswerBody::Json {
                answer,
                generated_at,
            } => answer.json_bytes(generated_at),
            AnswerBody::Text { body, footer } => {
                let mut out = BytesMut::with_capacity(body.len() + footer.len());
                out.extend_from_slice(body);
                out.extend_from_slice(footer);
                out.freeze()
            }
            AnswerBody::Done => Bytes::new(),
        }
    }
}

impl MessageBody for AnswerBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(match self {
            AnswerBody::Json {
                answer,
                generated_at,
            } => (answer.json_len + generated_at.len()) as u64,
            AnswerBody::Text { body, footer } => (body.len() + footer.len()) as u64,
            AnswerBody::Done => 0,
        })
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        match std::mem::replace(&mut *self, AnswerBody::Done) {
            AnswerBody::Done => Poll::Ready(None),
            body => Poll::Ready(Some(Ok(body.to_bytes()))),
        }
    }
}

/// A weak validator of the substance of an answer (everything but its time).
pub fn weak_etag(substance: &[u8]) -> HeaderValue {
    etag_of(Sha256::digest(substance).as_slice())
}

fn etag_of(digest: &[u8]) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{}\"", hex::encode(&digest[..12])))
        .unwrap_or_else(|_| HeaderValue::from_static("W/\"0\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> RenderedAnswer {
        answer_at(0)
    }

    fn answer_at(seq: i64) -> RenderedAnswer {
        RenderedAnswer::new(
            &LookupResponse {
                postcode: Some("33000".to_owned()),
                insee: None,
                generated_at: chrono::Utc::now(),
                demo: false,
                notice: None,
                communes: Vec::new(),
            },
            seq,
            None,
        )
    }

    #[test]
    fn an_answer_holds_for_every_snapshot_no_change_reached_it_since() {
        let budget = Arc::new(CacheBudget {
            limit: 1 << 20,
            used: AtomicUsize::new(0),
        });
        let cache = AnswerCache::new(2);
        let now = chrono::Utc::now();
        let at_5 = cache.get_or_render(0, 5, now, &budget, || answer_at(5));
        let other = cache.get_or_render(1, 5, now, &budget, || answer_at(5));
        // Snapshots 6 and 7 changed something elsewhere: the answer of 5 holds for them.
        assert!(Arc::ptr_eq(
            &at_5,
            &cache.get_or_render(0, 7, now, &budget, || answer_at(7))
        ));
        // Change 8 reaches postcode 0: snapshot 8 renders again, and keeps that answer...
        cache.mark(0, 8);
        let at_8 = cache.get_or_render(0, 8, now, &budget, || answer_at(8));
        assert!(!Arc::ptr_eq(&at_5, &at_8));
        assert!(Arc::ptr_eq(
            &at_8,
            &cache.get_or_render(0, 9, now, &budget, || answer_at(9))
        ));
        // ...while a request still on snapshot 7 gets an answer of its own, not kept.
        let late = cache.get_or_render(0, 7, now, &budget, || answer_at(7));
        assert!(!Arc::ptr_eq(&late, &at_8));
        assert!(Arc::ptr_eq(
            &at_8,
            &cache.get_or_render(0, 8, now, &budget, || answer_at(8))
        ));
        // Postcode 1 was never reached: its answer of 5 still holds.
        assert!(Arc::ptr_eq(
            &other,
            &cache.get_or_render(1, 9, now, &budget, || answer_at(9))
        ));
        assert_eq!(cache.rendered(9, now), 2);
        assert_eq!(cache.rendered(7, now), 1);
    }

    #[test]
    fn answers_are_kept_within_the_budget_and_released_when_dropped() {
        let size = answer().size();
        let budget = Arc::new(CacheBudget {
            limit: size + size / 2,
            used: AtomicUsize::new(0),
        });
        let cache = AnswerCache::new(3);
        let now = chrono::Utc::now();
        let first = cache.get_or_render(0, 0, now, &budget, answer);
        assert_eq!(budget.used(), size);
        // The same slot again: served from the cache.
        assert!(Arc::ptr_eq(
            &first,
            &cache.get_or_render(0, 0, now, &budget, answer)
        ));
        // Another: over the budget, served but not kept.
        let second = cache.get_or_render(1, 0, now, &budget, answer);
        assert!(!Arc::ptr_eq(
            &second,
            &cache.get_or_render(1, 0, now, &budget, answer)
        ));
        assert_eq!(cache.rendered(0, now), 1);
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
