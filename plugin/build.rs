//! Links the `bond` binary as a position-dependent executable (`-no-pie`): loaded at one fixed
//! address, it needs no relocation work at exec. A CNI plugin is one short process per call,
//! so start-up is a large part of its cost, most of all under emulation (qemu TCG), where a
//! fixed address also lets the emulator reuse the code it already translated for the last
//! call instead of translating it again at a new random address.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=bond=-no-pie");
    }
}
