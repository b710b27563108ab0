//! The only module with `unsafe`. Every `unsafe` block carries a `// SAFETY:` comment;
//! everything exported is a safe API.

pub mod signal;
