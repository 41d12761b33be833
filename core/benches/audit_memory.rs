//! The audit's peak memory as the chain grows: books of 10,000 and then 100,000 credited blocks
//! (one transaction each, ten blocks per distribution, 20 recipients), audited in one process;
//! prints the bytes this process held at the audit's peak above what it held before, counted by
//! a counting allocator (a figure that depends on the code, not on the machine's speed).
//!
//! Run: `scripts/with-test-servers.sh cargo bench -p minerpool-core --bench audit_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bson::{DateTime, Document, doc};
use minerpool_core::store::names;
use minerpool_core::testing::fresh_store;

/// The system allocator, counting the bytes held now and the most held since the last reset.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let held = HELD.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(held, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(pointer, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BLOCKS_PER_DISTRIBUTION: i64 = 10;
const RECIPIENTS: i64 = 20;
const UNITS_PER_BLOCK: i64 = 1_000_000;
const INSERT_BATCH: usize = 5_000;

async fn insert_all(store: &minerpool_core::store::Store, collection: &str, docs: Vec<Document>) {
    for chunk in docs.chunks(INSERT_BATCH) {
        store
            .collection::<Document>(collection)
            .insert_many(chunk.to_vec())
            .await
            .expect("seed the books");
    }
}

/// Books of `blocks` credited blocks that agree with each other, as the rewards job writes them.
async fn seed(store: &minerpool_core::store::Store, blocks: i64) {
    let now = DateTime::now();
    let hash = |block: i64| format!("{block:064x}");
    let transactions = (1..=blocks)
        .map(|block| doc! { "hash": hash(block), "block_id": block, "credited_at": now })
        .collect();
    insert_all(store, names::BLOCK_TRANSACTIONS, transactions).await;
    let per_recipient = UNITS_PER_BLOCK * BLOCKS_PER_DISTRIBUTION / RECIPIENTS;
    let distributions = (0..blocks / BLOCKS_PER_DISTRIBUTION)
        .map(|n| {
            let (first, last) = (
                n * BLOCKS_PER_DISTRIBUTION + 1,
                (n + 1) * BLOCKS_PER_DISTRIBUTION,
            );
            let lines: Vec<Document> = (0..RECIPIENTS)
                .map(|r| {
                    doc! {
                        "address": format!("recipient{r:02}"),
                        "kind": "pool",
                        "units": per_recipient,
                        "basis": { "score": { "score": 10_i64 } },
                    }
                })
                .collect();
            doc! {
                "_id": format!("{first}-{last}"),
                "first_block": first,
                "last_block": last,
                "received": UNITS_PER_BLOCK * BLOCKS_PER_DISTRIBUTION,
                "hashes": (first..=last).map(hash).collect::<Vec<_>>(),
                "lines": lines,
                "created_at": now,
            }
        })
        .collect();
    insert_all(store, names::REWARD_DISTRIBUTIONS, distributions).await;
    let pending = per_recipient * (blocks / BLOCKS_PER_DISTRIBUTION);
    let balances = (0..RECIPIENTS)
        .map(|r| doc! { "address": format!("recipient{r:02}"), "pending": pending, "paid": 0_i64 })
        .collect();
    insert_all(store, names::BALANCES, balances).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("audit peak memory (bytes held by this process above the figure before the audit)");
    let mut figures = Vec::new();
    for blocks in [10_000_i64, 100_000] {
        let store = fresh_store(&format!("bench_audit_{blocks}")).await;
        let seeding = Instant::now();
        seed(&store, blocks).await;
        let seeded_in = seeding.elapsed();
        let before = HELD.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let started = Instant::now();
        let report = store.audit().await.expect("audit");
        let elapsed = started.elapsed();
        let peak = PEAK.load(Ordering::Relaxed) - before;
        assert!(
            report.discrepancies.is_empty(),
            "the seeded books agree: {:?}",
            report.discrepancies.first()
        );
        assert_eq!(report.received, blocks * UNITS_PER_BLOCK);
        println!(
            "{blocks:>7} blocks ({} distributions): peak {:>12} bytes ({:.1} MiB), audit {:.1} s (seeded in {:.1} s)",
            blocks / BLOCKS_PER_DISTRIBUTION,
            peak,
            peak as f64 / (1024.0 * 1024.0),
            elapsed.as_secs_f64(),
            seeded_in.as_secs_f64(),
        );
        figures.push(peak);
        store
            .database()
            .drop()
            .await
            .expect("drop the bench database");
    }
    println!(
        "100,000 / 10,000 blocks: {:.2}× the peak",
        figures[1] as f64 / figures[0] as f64
    );
}
