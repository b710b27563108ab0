//! xengtd: the vGPU mediator daemon (placeholder until the daemon lands).
#![forbid(unsafe_code)]

fn main() {
    println!("xengtd: workspace skeleton; the daemon and demo land in later commits");
}
