//! A virtual X display for tests that start a real window (the Linux binary, or the Windows one
//! under Wine), and a guard that ends a child process when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ends a child process when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Xvfb on a display number no other process uses, searching from `first` (test modules
/// start from different numbers, so that test binaries running side by side rarely race).
/// Tests of one binary share a process: one picks a number at a time, and a number whose Xvfb
/// exited (another process took it first) is passed over.
pub fn xvfb(first: u32) -> (Killed, String) {
    static PICKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _picking = PICKING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for n in (first + std::process::id() % 40)..(first + 100) {
        if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
            continue;
        }
        let display = format!(":{n}");
        let child = Command::new("Xvfb")
            .args([
                display.as_str(),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (package xvfb) must be installed: scripts/test.sh installs it");
        let mut guard = Killed(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(guard.0.try_wait(), Ok(Some(_))) {
                // the display was taken meanwhile: try the next number
                break;
            }
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                return (guard, display);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("no free X display");
}
