//! The shared state of a running service: the database pool and the directory snapshot,
//! and the one write path that keeps them in step.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use arc_swap::ArcSwap;
use diesel::QueryResult;

use crate::answers::PostcodeIndex;
use crate::atlas::Atlas;
use crate::db::{DbConnection, DbPool};
use crate::directory::Directory;
use crate::error::ApiError;
use crate::feeds::ChangeEvent;
use crate::store::{self, StoreError};

/// Shared by every request handler.
pub struct AppState {
    db: DbPool,
    atlas: Arc<Atlas>,
    postcodes: Arc<PostcodeIndex>,
    directory: ArcSwap<Directory>,
    /// Serializes writes in this process, so that SQLite never sees two writers of ours
    /// upgrade their locks at once.
    write_lock: Mutex<()>,
    /// Whether writes queue on `write_lock` (SQLite).
    serialize_in_process: bool,
    /// The requests' writes waiting for the next batch (see [`AppState::write`]).
    queued_writes: Mutex<VecDeque<QueuedWrite>>,
    /// Told when the queue holds [`FULL_ENOUGH`] writes: a batch waiting for company
    /// need not wait longer.
    queue_filled: Condvar,
    /// Whether a request's blocking task is running the queued batches (the leader); the
    /// other requests only queue their write and wait for its outcome.
    leading: AtomicBool,
    /// Batches committed, and the requests' writes they held (for `/metrics`).
    batches_committed: AtomicU64,
    batched_writes: AtomicU64,
    /// How long a batch waits for company under overlapping writes (see
    /// [`AppState::set_commit_delay`]); zero never waits.
    commit_delay_us: AtomicU64,
    /// Requests' writes between their call of [`AppState::write`] and their answer.
    writes_in_flight: AtomicU64,
    /// When a write last began while another was in flight (Unix microseconds).
    last_overlap_us: AtomicI64,
    /// Batches that waited for company (for `/metrics`).
    delayed_batches: AtomicU64,
    /// When free memory was last returned to the system (Unix milliseconds).
    last_trim_ms: AtomicI64,
    /// Serializes catching up with the changes log, so that snapshots follow the log in
    /// order and every change reaches `events` once.
    sync_lock: Mutex<()>,
    /// Every public change, in order, to the live subscribers (Server-Sent Events).
    events: tokio::sync::broadcast::Sender<Arc<ChangeEvent>>,
    /// This process, among the instances of a cluster (webhook leases name it).
    instance_id: String,
    /// The webhooks this process runs a delivery task for.
    webhook_tasks: Mutex<std::collections::HashSet<String>>,
    /// Whether storage answered the last time we asked.
    storage_up: AtomicBool,
    /// When storage last answered (Unix microseconds): the snapshot is known to be
    /// current as of then.
    storage_seen: AtomicI64,
}

/// A request's write waiting in the queue. Run inside its batch's transaction, it says
/// whether it succeeded and returns what tells its caller the outcome once the batch has
/// committed (`None`) or failed.
type QueuedWrite = Box<dyn FnOnce(Attempt<'_>) -> (bool, Completion) + Send>;
type Completion = Box<dyn FnOnce(Option<&ApiError>) + Send>;

/// What becomes of a queued write.
enum Attempt<'a> {
    /// Run it on this connection, inside the batch's transaction.
    Run(&'a mut DbConnection, &'a Atlas),
    /// It cannot run (storage is away): tell its caller why.
    Refuse(&'a ApiError),
}

/// Why a write's savepoint ended without its changes.
enum SavepointEnd {
    /// The write failed and its savepoint was rolled back; the batch goes on.
    Undone,
    /// The savepoint itself failed: the batch's transaction cannot go on.
    Broken(StoreError),
}

impl From<diesel::result::Error> for SavepointEnd {
    fn from(e: diesel::result::Error) -> Self {
        SavepointEnd::Broken(StoreError::Db(e))
    }
}

/// Runs one write of a batch in its own savepoint, so that its failure undoes only itself.
fn in_savepoint(
    conn: &mut DbConnection,
    atlas: &Atlas,
    job: QueuedWrite,
) -> Result<Completion, StoreError> {
    use diesel::Connection;
    let mut completion = None;
    let ended = conn.transaction::<(), SavepointEnd, _>(|conn| {
        let (ok, complete) = store::with_write_boundary(|| job(Attempt::Run(conn, atlas)));
        completion = Some(complete);
        if ok {
            Ok(())
        } else {
            Err(SavepointEnd::Undone)
        }
    });
    match (ended, completion) {
        (Ok(()) | Err(SavepointEnd::Undone), Some(complete)) => Ok(complete),
        (Err(SavepointEnd::Broken(e)), complete) => {
            // The write's own outcome does not stand: its caller hears what broke (storage
            // gone is a 503, like any write's), the rest of the batch that the
            // transaction cannot go on.
            if let Some(complete) = complete {
                complete(Some(&ApiError::from(e)));
            }
            Err(StoreError::Db(
                diesel::result::Error::BrokenTransactionManager,
            ))
        }
        (_, None) => Err(StoreError::Db(
            diesel::result::Error::BrokenTransactionManager,
        )),
    }
}

/// The most writes one transaction takes: a batch holds the writers' lock until it
/// commits, so a long one would delay everybody behind it.
const MAX_BATCH: usize = 64;

/// A batch waiting for company stops waiting once this many writes are queued: the
/// commit and the snapshot update are then shared widely enough, and under a burst of
/// concurrent clients waiting longer would only lower throughput.
const FULL_ENOUGH: usize = 16;

/// How recently two writes must have overlapped for a batch to wait for company: longer
/// than the gaps of a steady stream of concurrent writes, short enough that a lone
/// client's writes after a burst are not delayed for long.
const OVERLAP_WINDOW_US: i64 = 100_000;

/// Counts a request's write as in flight until it is answered or abandoned, and notes when
/// it began beside another one (see [`AppState::set_commit_delay`]).
struct InFlight<'a>(&'a AppState);

impl<'a> InFlight<'a> {
    fn begin(state: &'a AppState) -> InFlight<'a> {
        if state.writes_in_flight.fetch_add(1, Ordering::AcqRel) > 0 {
            state
                .last_overlap_us
                .store(store::now().timestamp_micros(), Ordering::Relaxed);
        }
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.writes_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often, at most, a catch-up under a steady stream of writes returns free memory to
/// the system (a few milliseconds' walk of the allocator's free lists each time).
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How many changes of the log one step of [`AppState::catch_up`] applies.
const CATCH_UP_BATCH: usize = 1000;

/// Returns the allocator's free pages to the system (glibc keeps them otherwise, and the
/// process would stay at the peak of an import for the rest of its life).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How many changes a slow subscriber may fall behind before it is told to reconnect
/// (and catch up from the log with `Last-Event-ID`).
const EVENT_BUFFER: usize = 4096;

impl AppState {
    /// Builds the state, reading the reference data and the first snapshot from storage.
    pub fn load(db: DbPool) -> Result<AppState, crate::db::DbError> {
        Self::load_with(db, crate::answers::DEFAULT_ANSWER_CACHE_MB << 20)
    }

    /// [`AppState::load`] with the memory the rendered lookup answers may take, in bytes.
    pub fn load_with(
        db: DbPool,
        answer_cache_bytes: usize,
    ) -> Result<AppState, crate::db::DbError> {
        let mut conn = db.get()?;
        let serialize_in_process = matches!(*conn, DbConnection::Sqlite(_));
        let atlas = Arc::new(Atlas::load(&mut conn)?);
        let postcodes = Arc::new(PostcodeIndex::with_budget(&atlas, answer_cache_bytes));
        let directory = store::load_directory(&mut conn, atlas.clone(), postcodes.clone())?;
        drop(conn);
        Ok(AppState {
            db,
            atlas,
            postcodes,
            directory: ArcSwap::from_pointee(directory),
            write_lock: Mutex::new(()),
            serialize_in_process,
            queued_writes: Mutex::new(VecDeque::new()),
            queue_filled: Condvar::new(),
            leading: AtomicBool::new(false),
            batches_committed: AtomicU64::new(0),
            batched_writes: AtomicU64::new(0),
            commit_delay_us: AtomicU64::new(0),
            writes_in_flight: AtomicU64::new(0),
            last_overlap_us: AtomicI64::new(0),
            delayed_batches: AtomicU64::new(0),
            last_trim_ms: AtomicI64::new(0),
            sync_lock: Mutex::new(()),
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
            instance_id: uuid::Uuid::now_v7().to_string(),
            webhook_tasks: Mutex::new(std::collections::HashSet::new()),
            storage_up: AtomicBool::new(true),
            storage_seen: AtomicI64::new(store::now().timestamp_micros()),
        })
    }

    /// The current snapshot. Cheap: an atomic load.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.load_full()
    }

    pub fn atlas(&self) -> &Arc<Atlas> {
        &self.atlas
    }

    pub fn pool(&self) -> &DbPool {
        &self.db
    }

    /// Brings the snapshot up to the end of the changes log: applies the changes committed
    /// since (by this process or any other), swaps the new snapshot in, then hands the
    /// public ones to the live subscribers. Returns how many changes were applied.
    pub fn catch_up(&self, conn: &mut DbConnection) -> QueryResult<usize> {
        let _guard = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut applied = 0;
        // In batches, each swapped in (a prefix of the log is a consistent state): an
        // import of 50,000 rows never holds all of its changes in memory at once.
        loop {
            let batch = self.catch_up_batch(conn)?;
            applied += batch;
            if batch < CATCH_UP_BATCH {
                break;
            }
        }
        if applied >= CATCH_UP_BATCH || (applied > 0 && self.trim_due()) {
            // A large catch-up (an import) freed much more than it kept; a steady stream
            // of writes frees the answers and snapshot nodes it replaces all over the
            // heap. Hand the freed pages back rather than let the process creep up.
            release_free_memory();
        }
        Ok(applied)
    }

    /// Whether [`TRIM_EVERY`] has passed since the last return of free memory (and if so,
    /// starts the next period).
    fn trim_due(&self) -> bool {
        let now = store::now().timestamp_millis();
        let last = self.last_trim_ms.load(Ordering::Relaxed);
        now - last >= TRIM_EVERY.as_millis() as i64
            && self
                .last_trim_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Applies at most [`CATCH_UP_BATCH`] changes; returns how many.
    fn catch_up_batch(&self, conn: &mut DbConnection) -> QueryResult<usize> {
        let current = self.directory.load_full();
        let mut changes = store::changes_after(conn, current.seq(), CATCH_UP_BATCH as i64)?;
        if changes.is_empty() {
            return Ok(0);
        }
        let applied = changes.len();
        let next = match current.apply(&changes, store::now()) {
            Ok(next) => next,
            Err(e) => {
                // Never serve a snapshot that disagrees with storage: rebuild it.
                tracing::error!(error = %e, "applying a change failed; reloading the directory");
                let fresh =
                    store::load_directory(conn, self.atlas.clone(), self.postcodes.clone())?;
                // The reload may include changes committed after the batch: fetch them for
                // the subscribers.
                let mut after = changes.last().map_or(current.seq(), |c| c.seq);
                while after < fresh.seq() {
                    let more = store::changes_after(conn, after, 1000)?;
                    let Some(last) = more.last().map(|c| c.seq) else {
                        break;
                    };
                    changes.extend(more.into_iter().filter(|c| c.seq <= fresh.seq()));
                    after = last;
                }
                fresh
            }
        };
        self.directory.store(Arc::new(next));
        for change in changes {
            if let Some(event) = ChangeEvent::public(change) {
                // No receiver is not an error: nobody listens yet.
                let _ = self.events.send(Arc::new(event));
            }
        }
        Ok(applied)
    }

    /// Runs one write (one transaction, see `store.rs`), then catches up with the changes
    /// log, so a write answered 2xx is visible to the next read. Blocking: call from a
    /// blocking context (the command line, tests) or through [`AppState::write`].
    pub fn write_blocking<T>(
        &self,
        f: impl FnOnce(&mut DbConnection, &Atlas) -> Result<T, StoreError>,
    ) -> Result<T, ApiError> {
        // SQLite has one writer at a time: queue in-process rather than in busy_timeout.
        // PostgreSQL writers run side by side until they append to the log (see
        // `store::write_transaction`), so that their commits can share a disk flush.
        // A panic in another writer poisons the lock but leaves nothing half-written
        // (transactions roll back), so the lock is still good to take.
        let _guard = self.serialize_in_process.then(|| {
            self.write_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        });
        let mut conn = self.connection()?;
        // One transaction around the whole write (the store's own transactions nest as
        // savepoints).
        let value = store::write_transaction(&mut conn, |conn| {
            store::with_write_boundary(|| f(conn, &self.atlas))
        })?;
        self.mark_storage(true);
        if let Err(e) = self.catch_up(&mut conn) {
            // The write is committed; the snapshot catches up on the next refresh.
            tracing::error!(error = %e, "snapshot refresh after a write failed");
        }
        Ok(value)
    }

    /// A live feed of the public changes committed from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<ChangeEvent>> {
        self.events.subscribe()
    }

    /// Runs one write for a request: [`AppState::write_blocking`]'s guarantees (one
    /// transaction, visible in the snapshot before this returns), with group commit.
    ///
    /// The write joins a queue. If no request leads, this one's blocking task becomes the
    /// leader and runs batches until the queue is empty; every other request only waits
    /// to be told (no thread of its own). A batch is everything queued, in one
    /// transaction, each write in its own savepoint, so that a failed write undoes only
    /// itself. One commit (one disk flush), one snapshot
    /// update and one lock round pay for the whole batch, which is what lets a core keep
    /// answering lookups under a steady stream of writes. Each write's outcome is told
    /// only after its batch committed; if the commit fails, every write of the batch fails
    /// with it and nothing of it is kept.
    pub async fn write<T, F>(self: Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, &Atlas) -> Result<T, StoreError> + Send + 'static,
    {
        // Until this returns or the request is dropped.
        let _in_flight = InFlight::begin(&self);
        let (tell, told) = tokio::sync::oneshot::channel::<Result<T, ApiError>>();
        let job: QueuedWrite = Box::new(move |attempt| {
            let outcome = match attempt {
                Attempt::Run(conn, atlas) => f(conn, atlas).map_err(ApiError::from),
                Attempt::Refuse(why) => Err(why.clone()),
            };
            let ok = outcome.is_ok();
            let complete: Completion = Box::new(move |failed: Option<&ApiError>| {
                let result = match (outcome, failed) {
                    // A write that failed changed nothing: its own error says why.
                    (Err(e), _) => Err(e),
                    (Ok(_), Some(commit)) => Err(commit.clone()),
                    (Ok(value), None) => Ok(value),
                };
                // The request may have gone away meanwhile: nobody to tell.
                let _ = tell.send(result);
            });
            (ok, complete)
        });
        {
            let mut queue = self.queued_writes.lock().unwrap_or_else(|p| p.into_inner());
            queue.push_back(job);
            if queue.len() == FULL_ENOUGH {
                self.queue_filled.notify_one();
            }
        }
        // One request's blocking task at a time runs the batches (the leader); the others
        // only wait to be told, so that a write under load costs no thread of its own.
        if !self.leading.swap(true, Ordering::AcqRel) {
            let runner = self.clone();
            actix_web::web::block(move || runner.lead_batches())
                .await
                .map_err(|e| ApiError::Internal(format!("write task failed: {e}")))?;
        }
        // Our write ran in a batch, which has told us by now or will.
        told.await
            .map_err(|_| ApiError::Internal("the write's batch failed unexpectedly".to_owned()))?
    }

    /// Runs batches until the queue is empty, as the leader (see [`AppState::write`]).
    fn lead_batches(&self) {
        loop {
            // A panic in a batch (a bug) fails that batch's writes, whose requests are told
            // so as their outcome is dropped, and nothing else: the leader goes on with the
            // writes queued behind it, which would otherwise wait for the next write to
            // come and lead. Nothing of the batch was committed unless the panic came
            // after its commit, and then the next catch-up brings the snapshot level; the
            // pool discards a connection dropped while panicking, open transaction and all.
            let batch =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_queued_writes()));
            if batch.is_err() {
                tracing::error!("a write batch panicked; its writes failed, the queue goes on");
            }
            self.leading.store(false, Ordering::Release);
            // A write queued after the last batch was taken, while this was still the
            // leader, did not start a leader of its own: run it, unless another request
            // has become the leader meanwhile.
            let pending = !self
                .queued_writes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            if !pending || self.leading.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }

    /// Takes the writers' lock, then runs what is queued (if another task's batch took
    /// it meanwhile, nothing is left and this returns at once).
    fn run_queued_writes(&self) {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut queue = self.queued_writes.lock().unwrap_or_else(|p| p.into_inner());
        if self.waits_for_company(queue.len()) {
            // Writes are arriving side by side: let the ones on their way join this batch
            // (one commit, one disk flush, one snapshot update for all of them) rather
            // than each pay for its own, until the delay is over or the batch is full
            // enough. A lone writer never waits (see `waits_for_company`).
            let deadline = std::time::Instant::now() + self.commit_delay();
            while queue.len() < FULL_ENOUGH {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                queue = self
                    .queue_filled
                    .wait_timeout(queue, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            self.delayed_batches.fetch_add(1, Ordering::Relaxed);
        }
        let batch: Vec<QueuedWrite> = {
            let n = queue.len().min(MAX_BATCH);
            queue.drain(..n).collect()
        };
        drop(queue);
        if batch.is_empty() {
            return;
        }
        let mut conn = match self.connection() {
            Ok(conn) => conn,
            Err(e) => {
                for job in batch {
                    let (_, complete) = job(Attempt::Refuse(&e));
                    complete(None);
                }
                return;
            }
        };
        let mut completions = Vec::with_capacity(batch.len());
        let size = batch.len() as u64;
        let alone = size == 1;
        let mut unrun = batch.into_iter();
        let committed = store::write_transaction(&mut conn, |conn| {
            if !alone {
                // The writers' lock (PostgreSQL) once for the batch, not once per write.
                store::announce_for_transaction(conn)?;
            }
            for job in unrun.by_ref() {
                if alone {
                    // Alone, its failure rolls the whole transaction back: no savepoint.
                    let (ok, complete) =
                        store::with_write_boundary(|| job(Attempt::Run(conn, &self.atlas)));
                    completions.push(complete);
                    if !ok {
                        return Err(StoreError::Db(diesel::result::Error::RollbackTransaction));
                    }
                } else {
                    completions.push(in_savepoint(conn, &self.atlas, job)?);
                }
            }
            Ok(())
        });
        let failed = match committed {
            Ok(()) => {
                self.mark_storage(true);
                self.batches_committed.fetch_add(1, Ordering::Relaxed);
                self.batched_writes.fetch_add(size, Ordering::Relaxed);
                if let Err(e) = self.catch_up(&mut conn) {
                    // The writes are committed; the snapshot catches up on the next refresh.
                    tracing::error!(error = %e, "snapshot refresh after a write failed");
                }
                None
            }
            Err(e) => Some(ApiError::from(e)),
        };
        for complete in completions {
            complete(failed.as_ref());
        }
        // Writes the transaction never reached (it could not begin, or broke before them)
        // hear why, as the others do, rather than that their batch vanished (a 500).
        if let Some(failed) = &failed {
            for job in unrun {
                let (_, complete) = job(Attempt::Refuse(failed));
                complete(None);
            }
        }
    }

    /// Whether the batch about to run should first wait [`AppState::set_commit_delay`]:
    /// there is something to run, room left in the batch, and writes overlapped lately
    /// (PostgreSQL's `commit_delay` waits under the same condition, with
    /// `commit_siblings`).
    fn waits_for_company(&self, queued: usize) -> bool {
        if self.commit_delay().is_zero() {
            return false;
        }
        let since_overlap =
            store::now().timestamp_micros() - self.last_overlap_us.load(Ordering::Relaxed);
        (1..MAX_BATCH).contains(&queued) && since_overlap < OVERLAP_WINDOW_US
    }

    fn connection(&self) -> Result<crate::db::PooledConn, ApiError> {
        self.db.get().map_err(|e| {
            self.mark_storage(false);
            ApiError::Unavailable(format!("storage is unavailable: {e}"))
        })
    }

    /// Runs a read that the snapshot cannot answer (history, queue, audit, feed backlog)
    /// on the blocking thread pool.
    pub async fn read<T, E, F>(self: Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        actix_web::web::block(move || {
            let mut conn = self.connection()?;
            f(&mut conn).map_err(Into::into)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("read task failed: {e}")))?
    }

    /// A write that is not a change of the directory (the webhook delivery log): taken
    /// under the same lock as every other write of this process, so that SQLite never
    /// sees two writers of ours at once, and without refreshing the snapshot.
    pub async fn write_log<T, F>(self: Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
    {
        actix_web::web::block(move || {
            let _guard = self
                .write_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut conn = self.connection()?;
            f(&mut conn).map_err(ApiError::from)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("write task failed: {e}")))?
    }

    /// How long a batch of requests' writes waits for others to join it when writes
    /// arrive side by side (a write began while another was in flight within the last
    /// 100 ms): group commit's delay. A lone writer, or writes one after another, never
    /// wait.
    pub fn set_commit_delay(&self, delay: std::time::Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.commit_delay_us.store(micros, Ordering::Relaxed);
    }

    pub fn commit_delay(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.commit_delay_us.load(Ordering::Relaxed))
    }

    /// How many batches waited for company (see [`AppState::set_commit_delay`]).
    pub fn delayed_batches(&self) -> u64 {
        self.delayed_batches.load(Ordering::Relaxed)
    }

    /// How many batches of requests' writes committed, and how many writes they held
    /// (each batch is one transaction: see [`AppState::write`]).
    pub fn write_batches(&self) -> (u64, u64) {
        (
            self.batches_committed.load(Ordering::Relaxed),
            self.batched_writes.load(Ordering::Relaxed),
        )
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Records that this process runs the delivery task of `webhook`; false if it already
    /// does.
    pub fn claim_webhook_task(&self, webhook: &str) -> bool {
        self.webhook_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(webhook.to_owned())
    }

    /// Records whether storage just answered.
    pub fn mark_storage(&self, up: bool) {
        if up {
            self.storage_seen
                .store(store::now().timestamp_micros(), Ordering::Relaxed);
        }
        self.storage_up.store(up, Ordering::Relaxed);
    }

    /// Whether storage answered the last time it was asked.
    pub fn storage_up(&self) -> bool {
        self.storage_up.load(Ordering::Relaxed)
    }

    /// While storage is away: since when the snapshot may be stale (the last time storage
    /// answered). `None` while storage answers.
    pub fn stale_since(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        if self.storage_up() {
            return None;
        }
        chrono::DateTime::from_timestamp_micros(self.storage_seen.load(Ordering::Relaxed))
    }

    /// Whether storage answers now.
    pub fn storage_ready(&self) -> bool {
        use diesel::connection::SimpleConnection;
        let ready = self
            .db
            .get()
            .is_ok_and(|mut c| c.batch_execute("SELECT 1").is_ok());
        self.mark_storage(ready);
        ready
    }
}
