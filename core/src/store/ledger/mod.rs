//! The books: the blocks scanned and transactions credited, the reward distributions and their
//! credit lines, and the balances. The rewards run's writes (`rewards.rs`) and the totals
//! (`totals.rs`) build on these.

pub mod rewards;
pub mod totals;

use std::collections::BTreeMap;

use bson::{DateTime, Document, doc};
use mongodb::Collection;
use serde::{Deserialize, Serialize};

pub use crate::rewards::{Basis, BlockIncome, LedgerKind, LedgerLine};
use crate::store::db::{Result, Store, StoreError};
use crate::store::loose;
use crate::store::names;
use crate::store::paging::{Before, MAX_PAGE, NewestFirst, PublicFind, PublicPage, next_cursor};

/// `blockHeight`: the last block scanned by the rewards job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockHeight {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(deserialize_with = "loose::int")]
    pub block_height: i64,
}

/// The `_id` of the one `blockHeight` document.
pub const LAST_BLOCK_HEIGHT_ID: &str = "last_block_height";

/// `scannedBlocks`: a block the rewards job scanned, with the hash it had then, so a later pass
/// can tell it was orphaned (SPEC §5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScannedBlock {
    #[serde(rename = "_id")]
    pub id: i64,
    pub hash: String,
    pub scanned_at: DateTime,
}

/// `blockTransactions`: a chain transaction already credited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditedTransaction {
    pub hash: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "loose::optional_int"
    )]
    pub block_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credited_at: Option<DateTime>,
}

/// `rewardDistributions`: what one rewards run received and whom it credited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardDistribution {
    /// Block range `first-last`.
    #[serde(rename = "_id")]
    pub id: String,
    pub first_block: i64,
    pub last_block: i64,
    /// Smallest units received in the range.
    pub received: i64,
    pub hashes: Vec<String>,
    pub lines: Vec<LedgerLine>,
    pub created_at: DateTime,
    /// What each block of the range paid, at the chain's time of that block, summing to
    /// `received` (blocks that paid nothing left out), so the charts show income when the chain
    /// carried it rather than when it was credited. Empty on distributions recorded before it
    /// existed or without the chain's block times: those are charted at `created_at`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub received_by_block: Vec<BlockIncome>,
}

/// `balances`: what an address is owed and has been paid, in smallest units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    pub address: String,
    #[serde(default)]
    pub pending: i64,
    #[serde(default)]
    pub paid: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
}

/// One ledger line crediting an address, with the distribution it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct CreditLine {
    /// The distribution's block range `first-last`.
    pub distribution: String,
    /// The distribution's last block: its key in the paging order.
    pub last_block: i64,
    pub line: LedgerLine,
    pub created_at: DateTime,
}

impl CreditLine {
    /// The `before` cursor of the page after `credits`, a page of [`Store::credits_of`] read
    /// with `limit`: a page holds `limit` distributions (each with one or more lines), so the
    /// page is full when it holds that many.
    pub fn next_page(credits: &[CreditLine], limit: i64) -> Option<Before<i64>> {
        let mut distributions: Vec<&str> =
            credits.iter().map(|c| c.distribution.as_str()).collect();
        distributions.dedup();
        next_cursor(
            distributions.len(),
            limit,
            credits.last().and_then(NewestFirst::cursor),
        )
    }
}

impl NewestFirst for CreditLine {
    type Key = i64;
    fn cursor(&self) -> Option<Before<i64>> {
        Before::row(Some(self.created_at), self.last_block)
    }
}

impl NewestFirst for RewardDistribution {
    type Key = i64;
    fn cursor(&self) -> Option<Before<i64>> {
        Before::row(Some(self.created_at), self.last_block)
    }
}

impl Store {
    pub fn block_height(&self) -> Collection<BlockHeight> {
        self.collection(names::BLOCK_HEIGHT)
    }

    pub fn credited_transactions(&self) -> Collection<CreditedTransaction> {
        self.collection(names::BLOCK_TRANSACTIONS)
    }

    pub fn reward_distributions(&self) -> Collection<RewardDistribution> {
        self.collection(names::REWARD_DISTRIBUTIONS)
    }

    pub fn balances(&self) -> Collection<Balance> {
        self.collection(names::BALANCES)
    }

    /// The balance of `address`, if it was ever credited.
    pub async fn balance_of(&self, address: &str) -> Result<Option<Balance>> {
        Ok(self
            .find_public::<Balance>(&PublicFind::balance(address))
            .await?
            .into_iter()
            .next())
    }

    /// The balances of `addresses` (a page of a list; at most [`super::reads::MAX_PAGE`] are
    /// read), by address; an address never credited is missing.
    pub async fn balances_of(&self, addresses: &[String]) -> Result<BTreeMap<String, Balance>> {
        Ok(self
            .find_public::<Balance>(&PublicFind::balances(addresses))
            .await?
            .into_iter()
            .map(|b| (b.address.clone(), b))
            .collect())
    }

    /// The ledger lines crediting `address`, newest first, from at most `limit` distributions
    /// created before `before` (several lines when it is, say, both a pool and a validator).
    pub async fn credits_of(
        &self,
        address: &str,
        limit: i64,
        before: Option<&Before<i64>>,
    ) -> Result<Vec<CreditLine>> {
        let distributions: Vec<RewardDistribution> = self
            .find_page(&PublicPage::credits_of(address, limit, before))
            .await?;
        Ok(distributions
            .into_iter()
            .flat_map(|d| {
                let (id, created_at, last_block) = (d.id, d.created_at, d.last_block);
                d.lines.into_iter().map(move |line| CreditLine {
                    distribution: id.clone(),
                    last_block,
                    line,
                    created_at,
                })
            })
            .collect())
    }

    /// Reward distributions, newest first, at most `limit`, after `before` (for paging).
    pub async fn recent_distributions(
        &self,
        limit: i64,
        before: Option<&Before<i64>>,
    ) -> Result<Vec<RewardDistribution>> {
        self.find_page(&PublicPage::distributions(limit, before))
            .await
    }

    pub async fn distribution(&self, id: &str) -> Result<Option<RewardDistribution>> {
        self.reward_distributions()
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::mongo("read the reward distribution"))
    }
}

impl PublicPage {
    /// Reward distributions, newest first, after `before` (keyed by last block).
    pub fn distributions(limit: i64, before: Option<&Before<i64>>) -> PublicPage {
        PublicPage::newest_first(
            names::REWARD_DISTRIBUTIONS,
            Document::new(),
            ("created_at", "last_block"),
            limit,
            before,
            None,
        )
    }

    /// The distributions crediting `address`, newest first, after `before` (keyed by last
    /// block), each with only that address's lines.
    pub fn credits_of(address: &str, limit: i64, before: Option<&Before<i64>>) -> PublicPage {
        PublicPage::newest_first(
            names::REWARD_DISTRIBUTIONS,
            doc! { "lines.address": address },
            ("created_at", "last_block"),
            limit,
            before,
            Some(address),
        )
    }
}

impl PublicFind {
    pub fn balance(address: &str) -> PublicFind {
        PublicFind {
            collection: names::BALANCES,
            filter: doc! { "address": address },
            sort: Document::new(),
            limit: 1,
            lines_of: None,
        }
    }

    /// The balances of some addresses (a page of a list), at most [`MAX_PAGE`].
    pub fn balances(addresses: &[String]) -> PublicFind {
        let addresses = &addresses[..addresses.len().min(MAX_PAGE as usize)];
        PublicFind {
            collection: names::BALANCES,
            filter: doc! { "address": { "$in": addresses } },
            sort: Document::new(),
            limit: 0,
            lines_of: None,
        }
    }
}
