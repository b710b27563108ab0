//! Storage for display register values: sparse, plain data, reset values from the table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::regs;

/// Register values that differ from (or were written over) their reset value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegFile {
    values: BTreeMap<u32, u32>,
}

impl RegFile {
    /// The current value of `offset` (its table reset value if never set).
    pub fn get(&self, offset: u32) -> u32 {
        self.values
            .get(&offset)
            .copied()
            .unwrap_or_else(|| regs::lookup(offset).reset)
    }

    /// Sets `offset` to `value`, ignoring masks (model-side update).
    pub fn set(&mut self, offset: u32, value: u32) {
        self.values.insert(offset, value);
    }

    /// Sets the bits of `mask` in `offset` to those of `value`.
    pub fn update(&mut self, offset: u32, mask: u32, value: u32) {
        let v = (self.get(offset) & !mask) | (value & mask);
        self.set(offset, v);
    }

    /// Applies a guest write through the table's writable and W1C masks; returns the
    /// previous and the new value.
    pub fn guest_write(&mut self, offset: u32, value: u32) -> (u32, u32) {
        let old = self.get(offset);
        let new = regs::lookup(offset).apply_write(old, value);
        self.set(offset, new);
        (old, new)
    }

    /// Forgets every value (display reset).
    pub fn clear(&mut self) {
        self.values.clear();
    }
}
