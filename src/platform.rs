//! Windows specifics that have a Unix counterpart elsewhere in the code: files and folders
//! readable only by the current user (the counterpart of 0600/0700, as a protected ACL that
//! also lets SYSTEM and Administrators in, as root on Unix), and
//! the console handling that lets one binary be both the desktop app and the CLI.
//!
//! On other platforms every function here is a no-op.

use std::path::Path;

/// Gives `path` a protected ACL (no inherited entries) that grants full control to the current
/// user, and to SYSTEM and the Administrators group, as Windows' own profile folders do — no
/// other user: the Windows counterpart of mode 0600 (which root reads too), or 0700 for a
/// directory, whose entries are inherited by everything created in it.
#[cfg(windows)]
pub fn restrict_to_current_user(path: &Path) -> std::io::Result<()> {
    windows::restrict_to_current_user(path)
}

/// No-op outside Windows (Unix uses file modes, see `datadir::open_private`).
#[cfg(not(windows))]
pub fn restrict_to_current_user(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Called first in `main`. The Windows binary is a console program, so that cmd and PowerShell
/// wait for it, see its output and get its exit code. Started with no subcommand from Explorer
/// (a double-click), Windows made a console just for it: the console is given up at once, so only
/// the window stays. A console shared with a shell (cmd, PowerShell) is kept.
#[cfg(windows)]
pub fn detach_own_console(has_args: bool) {
    if !has_args {
        windows::free_console_if_own();
    }
}

/// No-op outside Windows.
#[cfg(not(windows))]
pub fn detach_own_console(_has_args: bool) {}

#[cfg(windows)]
mod windows {
    use std::ffi::OsStr;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::OnceLock;

    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, HLOCAL, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
        SDDL_REVISION_1,
    };
    use windows_sys::Win32::Security::{
        DACL_SECURITY_INFORMATION, GetTokenInformation, PROTECTED_DACL_SECURITY_INFORMATION,
        PSECURITY_DESCRIPTOR, SetFileSecurityW, TOKEN_QUERY, TOKEN_USER, TokenUser,
    };
    use windows_sys::Win32::System::Console::{FreeConsole, GetConsoleProcessList};
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    fn wide(s: &OsStr) -> Vec<u16> {
        s.encode_wide().chain(std::iter::once(0)).collect()
    }

    /// The current user's SID as a string (`S-1-5-21-…`), read once from the process token.
    fn current_user_sid() -> std::io::Result<&'static str> {
        static SID: OnceLock<Result<String, String>> = OnceLock::new();
        SID.get_or_init(|| read_user_sid().map_err(|e| e.to_string()))
            .as_deref()
            .map_err(|e| std::io::Error::other(format!("reading the current user's SID: {e}")))
    }

    fn read_user_sid() -> std::io::Result<String> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: GetCurrentProcess returns a pseudo handle; `token` receives a handle we close.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let result = (|| {
            let mut len = 0u32;
            // SAFETY: a size query with a null buffer; fails with ERROR_INSUFFICIENT_BUFFER.
            unsafe { GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len) };
            if len == 0 {
                return Err(std::io::Error::last_os_error());
            }
            // u64 words keep the buffer aligned for TOKEN_USER
            let mut buf = vec![0u64; (len as usize).div_ceil(8)];
            // SAFETY: the buffer holds `len` bytes, as the size query asked.
            if unsafe {
                GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len)
            } == 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: GetTokenInformation(TokenUser) filled the buffer with a TOKEN_USER.
            let user = unsafe { &*(buf.as_ptr() as *const TOKEN_USER) };
            let mut text: *mut u16 = std::ptr::null_mut();
            // SAFETY: the SID points into `buf`, alive here; `text` is freed with LocalFree.
            if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut text) } == 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `text` is a NUL-terminated UTF-16 string from ConvertSidToStringSidW.
            let sid = unsafe {
                let n = (0..).take_while(|&i| *text.add(i) != 0).count();
                let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
                LocalFree(text as HLOCAL);
                s
            };
            Ok(sid)
        })();
        // SAFETY: `token` came from OpenProcessToken above.
        unsafe { CloseHandle(token) };
        result
    }

    pub(super) fn restrict_to_current_user(path: &Path) -> std::io::Result<()> {
        let sid = current_user_sid()?;
        // P: protected (nothing inherited from the parent); full access (FA) for the user,
        // SYSTEM (SY) and Administrators (BA); OICI: files and folders created inside inherit.
        let inherit = if path.is_dir() { "OICI" } else { "" };
        let sddl = format!("D:P(A;{inherit};FA;;;{sid})(A;{inherit};FA;;;SY)(A;{inherit};FA;;;BA)");
        let sddl = wide(OsStr::new(&sddl));
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated; `sd` is allocated by the call and freed below.
        if unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        } == 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let wpath = wide(path.as_os_str());
        // SAFETY: `wpath` is NUL-terminated and `sd` a valid descriptor from the call above.
        let ok = unsafe {
            SetFileSecurityW(
                wpath.as_ptr(),
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                sd,
            )
        };
        let err = std::io::Error::last_os_error();
        // SAFETY: `sd` was allocated with LocalAlloc by the conversion above.
        unsafe { LocalFree(sd as HLOCAL) };
        if ok == 0 {
            return Err(std::io::Error::new(
                err.kind(),
                format!("restricting {} to the current user: {err}", path.display()),
            ));
        }
        Ok(())
    }

    pub(super) fn free_console_if_own() {
        let mut pids = [0u32; 4];
        // SAFETY: the buffer holds 4 ids, as passed.
        let n = unsafe { GetConsoleProcessList(pids.as_mut_ptr(), pids.len() as u32) };
        // 1: the console was made for this process alone (started from Explorer)
        if n == 1 {
            // SAFETY: no arguments; later writes to the old console handles fail quietly.
            unsafe { FreeConsole() };
        }
    }
}
