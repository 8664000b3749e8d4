//! Release builds of the `switchyard` binary lay out the request path's functions first in
//! `.text`, together, in the order of how much CPU they took under load
//! (`link/hot-functions.txt`, written by `benches/hot-functions.sh` from `perf` samples): the
//! few hundred functions a request runs then share instruction-cache lines and TLB pages
//! instead of being spread over ~16 MiB of code among cold ones. This is what profile-guided
//! layout (PGO, BOLT) would do; both need LLVM tools that match rustc's LLVM, which a Debian
//! machine does not have, so the linker's symbol ordering is used instead.
//!
//! Only where the linker is LLD: rustc's default on x86_64 Linux (GNU) since 1.90, where it
//! links with its own `rust-lld`. Elsewhere, with an older rustc, with rustflags that choose a
//! linker, or with `SWITCHYARD_NO_SYMBOL_ORDER` set (a build with another linker), nothing is
//! added. Names the list has that a build no longer has are skipped without
//! a warning: a stale list costs layout, never a failed build. Touches nothing but link
//! arguments.

use std::env;
use std::path::Path;
use std::process::Command;

/// The first rustc release that links x86_64 Linux (GNU) binaries with `rust-lld` by default.
const LLD_SINCE_MINOR: u32 = 90;

fn main() {
    let list = Path::new("link/hot-functions.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-env-changed=SWITCHYARD_NO_SYMBOL_ORDER");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let lld_by_default = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let linker_chosen = var("CARGO_ENCODED_RUSTFLAGS").contains("linker");
    if var("PROFILE") != "release"
        || !lld_by_default
        || linker_chosen
        || env::var_os("SWITCHYARD_NO_SYMBOL_ORDER").is_some()
        || rustc_minor().is_none_or(|minor| minor < LLD_SINCE_MINOR)
    {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let path = Path::new(&dir).join(list);
    if !path.is_file() {
        return;
    }
    for arg in [
        format!("-Wl,--symbol-ordering-file={}", path.display()),
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ] {
        println!("cargo:rustc-link-arg-bin=switchyard={arg}");
    }
}

/// The minor version of the rustc building this (`1.95.0` → 95).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var_os("RUSTC")?;
    let out = Command::new(rustc).arg("-vV").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let release = text.lines().find_map(|l| l.strip_prefix("release: "))?;
    release.split('.').nth(1)?.parse().ok()
}
