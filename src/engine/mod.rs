//! The sync engine: pure logic over values. A source's [`Snapshot`] is normalized (emails,
//! nesting, duplicates), diffed against the cache into a [`Plan`], checked by the guard and cut
//! into import batches. No I/O happens here.

pub mod batch;
pub mod diff;
pub mod guard;
pub mod lifecycle;
pub mod model;
pub mod normalize;
pub mod org;
pub mod run;

pub use batch::{Batch, build_batches};
pub use diff::{
    Baseline, Cache, CachedGroup, CachedMember, DiffOptions, EmailChange, GroupChange,
    MemberChange, Plan, diff,
};
pub use guard::{
    GuardLimits, check_group_guard, check_guard, check_member_list, check_short_member_list,
};
pub use model::{DirGroup, DirUser, Id, MemberRef, Snapshot};
pub use normalize::{NormGroup, NormUser, Normalized, Skipped, normalize};
pub use org::{Drift, GroupRows, MemberRows, OrgGroup, OrgMember, Organization};
