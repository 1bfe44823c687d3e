//! Lookup answers rendered once and served many times.
//!
//! In a crisis nearly every read is `GET /v1/lookup?postcode=`, over a few thousand
//! postcodes. The answer of every postcode asked so far is kept rendered, as pieces that
//! share the numbers' JSON with the snapshot, with its weak ETag; a request copies the
//! pieces and the snapshot time into one buffer. An answer is made of its communes'
//! sections, each rendered once for every answer that lists the commune (its postcodes,
//! its INSEE code). The cache is shared by the snapshots of a lineage, and a section or an
//! answer holds until a change reaches its commune or postcode: a publication in a
//! commune of Gironde re-renders that commune's section and re-assembles the answers of
//! its postcodes, and leaves the rest of the country's answers warm.

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
use crate::directory::{chain, places_for_postcode, Place};
use crate::domain::{Territory, TerritoryKind};
use crate::lookup::{LookupCommune, LookupService, ServiceStatus, DEMO_NOTICE};
use crate::public_number::PublicNumber;

/// Postcodes and places by position, which of them each territory reaches, and how much
/// memory the rendered answers may take.
#[derive(Debug)]
pub struct PostcodeIndex {
    position: HashMap<String, usize>,
    /// For each territory, the positions of the postcodes with a commune inside it.
    reach: HashMap<Territory, Vec<usize>>,
    /// The places a lookup can name (every commune, and every municipal arrondissement
    /// with its commune), by the INSEE code of the narrowest of the two, sorted: a
    /// place's position is its index (five bytes a place, where a map of strings took
    /// ten times that).
    places: Box<[[u8; 5]]>,
    /// For each département and zone, the positions of the places inside it; for each
    /// commune with municipal arrondissements, theirs. A commune's own place is found by
    /// its code, and a national change reaches every place: neither needs a list.
    place_reach: HashMap<Territory, Vec<u32>>,
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

/// The territories whose changes reach `place`: its chain, and the commune itself when
/// the place is an arrondissement (a number of the whole city reaches it).
fn reaching(atlas: &Atlas, place: Place<'_>) -> impl Iterator<Item = Territory> {
    let city = place
        .arrondissement
        .and_then(|_| Territory::parse("commune", &place.commune.insee).ok());
    chain(atlas, place).into_iter().chain(city)
}

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
            let territories: HashSet<Territory> = places_for_postcode(atlas, code)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|place| reaching(atlas, place))
                .collect();
            for t in territories {
                reach.entry(t).or_default().push(i);
            }
        }
        let mut places: Vec<[u8; 5]> = atlas
            .communes()
            .filter_map(|c| c.insee.as_bytes().try_into().ok())
            .collect();
        places.sort_unstable();
        places.dedup();
        let mut place_reach: HashMap<Territory, Vec<u32>> = HashMap::new();
        for c in atlas.communes() {
            let place = match c.parent.as_deref().and_then(|p| atlas.commune(p)) {
                Some(city) => Place {
                    commune: city,
                    arrondissement: Some(c),
                },
                None => Place {
                    commune: c,
                    arrondissement: None,
                },
            };
            let Some(i) = position_in(&places, &c.insee) else {
                continue;
            };
            for t in reaching(atlas, place) {
                let listed = match t.kind() {
                    TerritoryKind::Departement | TerritoryKind::Zone => true,
                    // The city, for an arrondissement; its own code finds it otherwise.
                    TerritoryKind::Commune => t.code() != c.insee,
                    TerritoryKind::National => false,
                };
                if listed {
                    place_reach.entry(t).or_default().push(i as u32);
                }
            }
        }
        PostcodeIndex {
            position: codes
                .iter()
                .enumerate()
                .map(|(i, c)| ((*c).to_owned(), i))
                .collect(),
            reach,
            places: places.into_boxed_slice(),
            place_reach,
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

    /// The position of the place whose narrowest part (arrondissement, else commune) has
    /// this INSEE code.
    pub fn place_position(&self, insee: &str) -> Option<usize> {
        position_in(&self.places, insee)
    }

    /// The postcodes whose answer a change at `territory` can alter.
    pub fn reached_by(&self, territory: &Territory) -> &[usize] {
        self.reach.get(territory).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Calls `f` with the position of every place whose section a change at `territory`
    /// (not national) can alter.
    fn for_each_place_reached_by(&self, territory: &Territory, mut f: impl FnMut(usize)) {
        if territory.kind() == TerritoryKind::Commune {
            if let Some(i) = self.place_position(territory.code()) {
                f(i);
            }
        }
        for &i in self
            .place_reach
            .get(territory)
            .map_or(&[][..], Vec::as_slice)
        {
            f(i as usize);
        }
    }
}

/// The position of `insee` in the sorted `places`.
fn position_in(places: &[[u8; 5]], insee: &str) -> Option<usize> {
    let key: [u8; 5] = insee.as_bytes().try_into().ok()?;
    places.binary_search(&key).ok()
}

/// The rendered lookup answers of one lineage of snapshots (a snapshot loaded from
/// storage and the ones made from it by applying changes), shared by every snapshot of
/// the lineage: one slot per postcode for its whole answer, and one slot per place for its
/// commune's section, which the answers of its postcodes and of its INSEE code are
/// assembled from. A change re-renders only the sections of the places it reaches; the
/// answer of a postcode it reaches is assembled again from its sections, most of which
/// still hold.
#[derive(Debug)]
pub struct AnswerCache {
    postcodes: Slots<RenderedAnswer>,
    sections: Slots<CommuneSection>,
}

impl AnswerCache {
    pub fn new(index: &PostcodeIndex) -> AnswerCache {
        AnswerCache {
            postcodes: Slots::new(index.len()),
            sections: Slots::new(index.places.len()),
        }
    }

    /// Records that the change at `seq` reaches every postcode and place of `touched`
    /// territories: what was rendered for them before it no longer holds for the
    /// snapshots from `seq` on. Called before the snapshot at `seq` is served.
    pub fn touch(&self, index: &PostcodeIndex, touched: &HashSet<Territory>, seq: i64) {
        if touched.contains(&Territory::National) {
            self.postcodes.mark_all(seq);
            self.sections.mark_all(seq);
            return;
        }
        for t in touched {
            for &i in index.reached_by(t) {
                self.postcodes.mark(i, seq);
            }
            index.for_each_place_reached_by(t, |i| self.sections.mark(i, seq));
        }
    }

    /// The answer of the postcode at `position` (see [`Slots::get_or_render`]).
    pub fn postcode_answer(
        &self,
        position: usize,
        seq: i64,
        now: DateTime<Utc>,
        budget: &Arc<CacheBudget>,
        render: impl FnOnce() -> RenderedAnswer,
    ) -> Arc<RenderedAnswer> {
        self.postcodes
            .get_or_render(position, seq, now, budget, render)
    }

    /// The section of the place at `position` (see [`Slots::get_or_render`]).
    pub fn section(
        &self,
        position: usize,
        seq: i64,
        now: DateTime<Utc>,
        budget: &Arc<CacheBudget>,
        render: impl FnOnce() -> CommuneSection,
    ) -> Arc<CommuneSection> {
        self.sections
            .get_or_render(position, seq, now, budget, render)
    }

    /// How many postcode answers hold for the snapshot at `seq` (for tests and metrics).
    pub fn rendered(&self, seq: i64, now: DateTime<Utc>) -> usize {
        self.postcodes.rendered(seq, now)
    }
}

/// What a rendering kept in a slot knows of its own validity: the snapshot it was
/// rendered from, when a number of it enters or leaves its validity, and the budget it
/// counts against while kept (released when it is dropped).
#[derive(Debug)]
pub struct Validity {
    /// The sequence of the snapshot it was rendered from.
    seq: i64,
    /// It was computed for a time before this instant, when a number of it enters or
    /// leaves its validity.
    holds_until: Option<DateTime<Utc>>,
    accounted: Option<(Arc<CacheBudget>, usize)>,
}

impl Validity {
    fn new(seq: i64, holds_until: Option<DateTime<Utc>>) -> Validity {
        Validity {
            seq,
            holds_until,
            accounted: None,
        }
    }

    fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.holds_until.is_none_or(|until| now < until)
    }
}

impl Drop for Validity {
    fn drop(&mut self) {
        if let Some((budget, size)) = &self.accounted {
            budget.release(*size);
        }
    }
}

/// A rendering a [`Slots`] cache can keep.
pub trait Kept {
    /// The memory it holds of its own (what it shares belongs to others).
    fn size(&self) -> usize;
    fn validity(&self) -> &Validity;
    fn validity_mut(&mut self) -> &mut Validity;
}

/// One slot per postcode or place, filled on first use.
///
/// Each slot remembers the sequence of the last change that reached it (`touched`); a
/// rendering made from the snapshot at sequence R holds for a snapshot at sequence S when
/// no change reached it since the older of the two: `touched <= min(R, S)`. So a new
/// snapshot costs one store per slot its changes reach, and requests still on the
/// previous snapshot keep their answers.
#[derive(Debug)]
pub struct Slots<T> {
    slots: Box<[Slot<T>]>,
}

#[derive(Debug)]
struct Slot<T> {
    kept: RwLock<Option<Arc<T>>>,
    touched: AtomicI64,
}

impl<T: Kept> Slot<T> {
    fn read(&self) -> Option<Arc<T>> {
        self.kept.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn holds(&self, kept: &T, seq: i64, now: DateTime<Utc>) -> bool {
        let validity = kept.validity();
        self.touched.load(Ordering::Acquire) <= validity.seq.min(seq) && validity.holds_at(now)
    }
}

impl<T: Kept> Slots<T> {
    pub fn new(len: usize) -> Slots<T> {
        Slots {
            slots: (0..len)
                .map(|_| Slot {
                    kept: RwLock::new(None),
                    touched: AtomicI64::new(0),
                })
                .collect(),
        }
    }

    /// Records that the change at `seq` reaches the slot at `position`.
    fn mark(&self, position: usize, seq: i64) {
        if let Some(slot) = self.slots.get(position) {
            slot.touched.fetch_max(seq, Ordering::AcqRel);
        }
    }

    fn mark_all(&self, seq: i64) {
        for slot in self.slots.iter() {
            slot.touched.fetch_max(seq, Ordering::AcqRel);
        }
    }

    /// The rendering at `position` for the snapshot at `seq`, made by `render` if none
    /// holds (none yet, a change reached it, or a number of it entered or left its
    /// validity since). A fresh one is kept unless a later change already reached it, or
    /// the budget is spent.
    pub fn get_or_render(
        &self,
        position: usize,
        seq: i64,
        now: DateTime<Utc>,
        budget: &Arc<CacheBudget>,
        render: impl FnOnce() -> T,
    ) -> Arc<T> {
        let Some(slot) = self.slots.get(position) else {
            return Arc::new(render());
        };
        if let Some(kept) = slot.read() {
            if slot.holds(&kept, seq, now) {
                return kept;
            }
        }
        let mut fresh = render();
        if fresh.validity().seq < slot.touched.load(Ordering::Acquire) {
            // Rendered from a snapshot a newer change already superseded: this request's
            // rendering, nobody else's.
            return Arc::new(fresh);
        }
        let size = fresh.size();
        if !budget.reserve(size) {
            // Over budget: served, not kept.
            return Arc::new(fresh);
        }
        fresh.validity_mut().accounted = Some((budget.clone(), size));
        let fresh = Arc::new(fresh);
        let mut kept = slot.kept.write().unwrap_or_else(|p| p.into_inner());
        // Two requests may render the same slot at once; the newer snapshot's stays.
        if kept
            .as_ref()
            .is_none_or(|k| k.validity().seq <= fresh.validity().seq)
        {
            *kept = Some(fresh.clone());
        }
        fresh
    }

    /// How many renderings hold for the snapshot at `seq` (for tests and metrics).
    pub fn rendered(&self, seq: i64, now: DateTime<Utc>) -> usize {
        self.slots
            .iter()
            .filter(|s| s.read().is_some_and(|k| s.holds(&k, seq, now)))
            .count()
    }
}

/// A part of a rendered JSON answer.
#[derive(Debug)]
enum Piece {
    /// Bytes of the rendering's own buffer (`glue`), from..to.
    Glue(u32, u32),
    /// A number's JSON, shared with the snapshot and every other answer listing it, and
    /// its length (kept here so that the copy can ask for the number's memory before it
    /// reads it).
    Number(PublicNumber, u32),
    /// Text that depends on the catalogue only, shared by every answer (see [`intern`]).
    Shared(&'static String),
    /// The value of `generated_at`: the time of the snapshot that serves the request.
    GeneratedAt,
    /// A commune's section, shared by every answer listing the commune.
    Section(Arc<CommuneSection>),
}

/// What a rendering says, as a digest (to make validators), and the length of its JSON
/// without the value of `generated_at`.
///
/// A number is named by its id and version rather than its JSON (a number's JSON is a
/// function of both, and this is a tenth of the bytes: renderings are on the write path),
/// a section by its own digest. The same content gets the same digest on every instance.
fn substance(glue: &[u8], pieces: &[Piece]) -> ([u8; 32], usize) {
    let mut digest = Sha256::new();
    let mut json_len = 0;
    for piece in pieces {
        match piece {
            Piece::Glue(from, to) => {
                digest.update(&glue[*from as usize..*to as usize]);
                json_len += (to - from) as usize;
            }
            Piece::Number(n, _) => {
                digest.update(b"\0number ");
                digest.update(n.id().as_bytes());
                digest.update(n.version().to_be_bytes());
                json_len += n.json_bytes().len();
            }
            Piece::Shared(text) => {
                digest.update(text.as_bytes());
                json_len += text.len();
            }
            Piece::GeneratedAt => {}
            Piece::Section(section) => {
                digest.update(b"\0section ");
                digest.update(section.digest);
                json_len += section.json_len;
            }
        }
    }
    (digest.finalize().into(), json_len)
}

/// The pieces of a rendering in order, its sections opened, each with the glue it refers
/// to: what an answer copies.
#[derive(Clone)]
struct Leaves<'a> {
    glue: &'a [u8],
    pieces: std::slice::Iter<'a, Piece>,
    /// The section being walked, if any (sections do not nest).
    section: Option<(&'a [u8], std::slice::Iter<'a, Piece>)>,
}

impl<'a> Leaves<'a> {
    fn new(glue: &'a [u8], pieces: &'a [Piece]) -> Self {
        Leaves {
            glue,
            pieces: pieces.iter(),
            section: None,
        }
    }
}

impl<'a> Iterator for Leaves<'a> {
    type Item = (&'a [u8], &'a Piece);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((glue, pieces)) = &mut self.section {
                match pieces.next() {
                    Some(piece) => return Some((glue, piece)),
                    None => self.section = None,
                }
            }
            match self.pieces.next()? {
                Piece::Section(section) => {
                    self.section = Some((&section.glue, section.pieces.iter()));
                }
                piece => return Some((self.glue, piece)),
            }
        }
    }
}

/// The bytes of a piece that is not a section.
fn leaf_bytes<'a>(glue: &'a [u8], piece: &'a Piece, generated_at: &'a [u8]) -> &'a [u8] {
    match piece {
        Piece::Glue(from, to) => &glue[*from as usize..*to as usize],
        Piece::Number(n, _) => n.json_bytes(),
        Piece::Shared(text) => text.as_bytes(),
        Piece::GeneratedAt => generated_at,
        // Sections do not nest.
        Piece::Section(_) => &[],
    }
}

/// Copies the JSON of a rendering (`generated_at` for its value) at the end of `out`.
///
/// The numbers' JSON lies all over the heap, and an answer of 70 numbers waits for memory
/// more than it copies: a second cursor runs [`PREFETCH_AHEAD`] pieces ahead and asks for
/// every cache line of its piece, without reading it (a number's length is in its piece),
/// so that many fetches overlap the copying. Measured with `tests/load/assemble.rs` on
/// the benchmark's 100,000-number directory.
fn copy_json(glue: &[u8], pieces: &[Piece], generated_at: &[u8], out: &mut BytesMut) {
    // The sections first: the cursor ahead reads where their pieces are.
    for piece in pieces {
        if let Piece::Section(section) = piece {
            prefetch_at(Arc::as_ptr(section).cast());
        }
    }
    let leaves = Leaves::new(glue, pieces);
    let mut ahead = leaves.clone();
    for (glue, piece) in ahead.by_ref().take(PREFETCH_AHEAD) {
        prefetch_piece(glue, piece);
    }
    for (glue, piece) in leaves {
        if let Some((glue, piece)) = ahead.next() {
            prefetch_piece(glue, piece);
        }
        out.extend_from_slice(leaf_bytes(glue, piece, generated_at));
    }
}

/// How many pieces ahead of the copy [`copy_json`] asks for memory: about 20 numbers
/// (pieces alternate between a number and the catalogue text around it). Measured with
/// `tests/load/assemble.rs` on the 100,000-number directory (session 10's machine, 32 MB
/// of L3): 16 ahead 2.77 µs an answer, 32 2.39, 48 2.25-2.30, 64 2.30-2.33, 96 and more
/// worse again; the 1,000-number directory, whose numbers stay in cache, 1.47-1.57 µs
/// throughout. Too short a lead leaves the copy waiting for memory; too long a one evicts
/// what it fetched before the copy reaches it.
const PREFETCH_AHEAD: usize = 48;

/// Asks for the memory of a piece that is not a section.
#[inline]
fn prefetch_piece(glue: &[u8], piece: &Piece) {
    match piece {
        Piece::Glue(from, to) => prefetch_bytes(
            glue.as_ptr().wrapping_add(*from as usize),
            (to - from) as usize,
        ),
        Piece::Number(n, len) => {
            let (at, len) = n.memory(*len as usize);
            prefetch_bytes(at, len);
        }
        // Catalogue text and the time are shared by every answer: in cache.
        Piece::Shared(_) | Piece::GeneratedAt | Piece::Section(_) => {}
    }
}

/// Hints the processor to load the cache lines of the `len` bytes at `start` (the first
/// 2 kB at most).
#[inline]
fn prefetch_bytes(start: *const u8, len: usize) {
    const LINE: usize = 64;
    const MAX_LINES: usize = 32;
    let first = start.wrapping_sub(start as usize % LINE);
    let lines = (start as usize % LINE + len).div_ceil(LINE).min(MAX_LINES);
    for line in 0..lines {
        prefetch_at(first.wrapping_add(line * LINE));
    }
}

/// One commune's part of the lookup answers (`{"insee":…,"services":[…]}`), rendered
/// once and shared by the answers of every postcode that serves the commune and of its
/// INSEE code, until a change reaches it.
#[derive(Debug)]
pub struct CommuneSection {
    glue: Box<[u8]>,
    /// Glue, numbers and shared text only.
    pieces: Box<[Piece]>,
    json_len: usize,
    digest: [u8; 32],
    /// Whether a number or an outage of it is historical demonstration data.
    demo: bool,
    validity: Validity,
}

impl CommuneSection {
    /// Renders `commune` (`demo` if any of its numbers or outages is demonstration data),
    /// computed from the snapshot at `seq`, which holds until `holds_until`.
    pub fn new(
        commune: &LookupCommune,
        demo: bool,
        seq: i64,
        holds_until: Option<DateTime<Utc>>,
    ) -> CommuneSection {
        let mut json = JsonPieces::default();
        json.commune(commune);
        let (glue, pieces) = json.finish();
        let (digest, json_len) = substance(&glue, &pieces);
        CommuneSection {
            glue,
            pieces,
            json_len,
            digest,
            demo,
            validity: Validity::new(seq, holds_until),
        }
    }
}

impl Kept for CommuneSection {
    fn size(&self) -> usize {
        self.glue.len()
            + self.pieces.len() * std::mem::size_of::<Piece>()
            + std::mem::size_of::<Self>()
            + 64
    }

    fn validity(&self) -> &Validity {
        &self.validity
    }

    fn validity_mut(&mut self) -> &mut Validity {
        &mut self.validity
    }
}

/// One lookup answer, as JSON and as text, with everything but the snapshot time.
///
/// The JSON is kept as pieces: the answer's own bytes (the postcode, `demo`...) and its
/// communes' sections, whose pieces are the numbers' JSON, shared with the snapshot, and
/// the commune's own bytes. Kept whole, the answers of all 6,310 postcodes of a dense
/// directory would take 300 MB (each lists some 70 numbers); as pieces they take a tenth
/// of that, and a request copies them into one buffer.
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
    validity: Validity,
}

impl Kept for RenderedAnswer {
    /// Its sections count for themselves.
    fn size(&self) -> usize {
        self.glue.len()
            + self.pieces.len() * std::mem::size_of::<Piece>()
            + std::mem::size_of::<Self>()
            + 128
    }

    fn validity(&self) -> &Validity {
        &self.validity
    }

    fn validity_mut(&mut self) -> &mut Validity {
        &mut self.validity
    }
}

impl RenderedAnswer {
    /// The answer for a postcode or an INSEE code made of its communes' sections, from
    /// the snapshot at `seq`: it holds while they all do.
    pub fn assemble(
        postcode: Option<&str>,
        insee: Option<&str>,
        sections: Vec<Arc<CommuneSection>>,
        seq: i64,
    ) -> RenderedAnswer {
        let demo = sections.iter().any(|s| s.demo);
        Self::assemble_with(postcode, insee, sections, demo, seq)
    }

    fn assemble_with(
        postcode: Option<&str>,
        insee: Option<&str>,
        sections: Vec<Arc<CommuneSection>>,
        demo: bool,
        seq: i64,
    ) -> RenderedAnswer {
        let holds_until = sections.iter().filter_map(|s| s.validity.holds_until).min();
        let mut json = JsonPieces::default();
        json.response(postcode, insee, demo, sections);
        let (glue, pieces) = json.finish();
        let (digest, json_len) = substance(&glue, &pieces);
        RenderedAnswer {
            glue,
            pieces,
            json_len,
            json_etag: etag_of(&digest),
            text: OnceLock::new(),
            validity: Validity::new(seq, holds_until),
        }
    }

    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.validity.holds_at(now)
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
        copy_json(&self.glue, &self.pieces, generated_at_json, &mut out);
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

/// Hints the processor to load the cache line at `at` (a hint only: no effect on what the
/// program computes).
#[inline]
fn prefetch_at(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing the program sees, whatever the
    // address; callers give addresses in or next to live allocations.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Writes a [`crate::lookup::LookupResponse`] as serde_json would, byte for byte, keeping each number's
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

    fn response(
        &mut self,
        postcode: Option<&str>,
        insee: Option<&str>,
        demo: bool,
        sections: Vec<Arc<CommuneSection>>,
    ) {
        self.raw("{");
        let mut first = true;
        if let Some(p) = postcode {
            self.key(first, "postcode");
            self.string(p);
            first = false;
        }
        if let Some(i) = insee {
            self.key(first, "insee");
            self.string(i);
            first = false;
        }
        self.key(first, "generated_at");
        self.piece(Piece::GeneratedAt);
        self.key(false, "demo");
        self.raw(if demo { "true" } else { "false" });
        if demo {
            self.key(false, "notice");
            self.string(DEMO_NOTICE);
        }
        self.key(false, "communes");
        self.raw("[");
        for (i, section) in sections.into_iter().enumerate() {
            if i > 0 {
                self.raw(",");
            }
            self.piece(Piece::Section(section));
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
            self.piece(Piece::Number(n.clone(), n.json_bytes().len() as u32));
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
    /// What is left to send of an assembled answer.
    Rest(Bytes),
    Done,
}

/// The most a body gives actix at once. actix copies every chunk into the connection's
/// write buffer, keeps that buffer between requests up to 128 kB, and drops and grows it
/// again (reallocating, copying) after a larger one; one answer in twelve is larger. In
/// chunks of at most this, the buffer stays under the limit and is reused, and each of the
/// 64 connections of the benchmark keeps at most this much of it; an answer over 64 kB (one
/// in four) takes two writes or more, the largest (400 kB) seven.
const CHUNK: usize = 64 * 1024;

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
            AnswerBody::Rest(rest) => rest.clone(),
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
            AnswerBody::Rest(rest) => rest.len() as u64,
            AnswerBody::Done => 0,
        })
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let mut chunk = match std::mem::replace(&mut *self, AnswerBody::Done) {
            AnswerBody::Done => return Poll::Ready(None),
            AnswerBody::Rest(rest) => rest,
            body => body.to_bytes(),
        };
        if chunk.len() > CHUNK {
            *self = AnswerBody::Rest(chunk.split_off(CHUNK));
        }
        Poll::Ready(Some(Ok(chunk)))
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

    /// Polls a body to its end, returning its chunks.
    fn chunks(mut body: AnswerBody) -> Vec<Bytes> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut body).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(chunk))) => out.push(chunk),
                Poll::Ready(None) => return out,
                Poll::Pending => panic!("an answer body never waits"),
            }
        }
    }

    #[test]
    fn a_large_body_goes_out_whole_in_chunks_actix_keeps_its_buffer_for() {
        let text: String = (0..40_000).map(|i| format!("{i:05}\n")).collect();
        let footer = Bytes::from_static("Mis à jour le 02/06/2021 à 12:00 UTC.".as_bytes());
        let body = AnswerBody::Text {
            body: Bytes::from(text.clone()),
            footer: footer.clone(),
        };
        let whole = [text.as_bytes(), &footer[..]].concat();
        assert_eq!(body.size(), BodySize::Sized(whole.len() as u64));
        let got = chunks(body);
        assert_eq!(got.len(), whole.len().div_ceil(CHUNK));
        assert!(got.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
        assert_eq!(got.concat(), whole);

        // An answer under the limit is one chunk.
        let small = AnswerBody::Text {
            body: Bytes::from_static(b"Bordeaux\n"),
            footer,
        };
        assert_eq!(chunks(small).len(), 1);
    }

    fn answer() -> RenderedAnswer {
        answer_at(0)
    }

    fn answer_at(seq: i64) -> RenderedAnswer {
        RenderedAnswer::assemble(Some("33000"), None, Vec::new(), seq)
    }

    #[test]
    fn an_answer_holds_for_every_snapshot_no_change_reached_it_since() {
        let budget = Arc::new(CacheBudget {
            limit: 1 << 20,
            used: AtomicUsize::new(0),
        });
        let cache = Slots::<RenderedAnswer>::new(2);
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
        let cache = Slots::<RenderedAnswer>::new(3);
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
