//! xengt-ctl: operator CLI for xengtd (placeholder).
#![forbid(unsafe_code)]

fn main() {
    println!("xengt-ctl: not yet implemented");
}
