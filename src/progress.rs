//! How a long stage reports: a message, how many entries were read so far, how far the push
//! is, and whether the caller asked to stop. The sources, the Bitwarden reads and the sync
//! report through it; the CLI, the window and the service show it.

/// Progress of a long stage: a message and how many entries were read so far.
pub trait Progress: Send + Sync {
    fn stage(&self, message: &str);
    fn count(&self, n: u64);
    /// Whether the caller asked to stop (the window is closing). A sync checks it between
    /// batches, so it stops on a batch boundary with the cache matching the server.
    fn cancelled(&self) -> bool {
        false
    }
    /// How far the push is, 0.0–1.0 (for a progress bar).
    fn set_fraction(&self, _fraction: f32) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _: &str) {}
    fn count(&self, _: u64) {}
}
