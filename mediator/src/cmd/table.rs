//! Table-driven header decoding for the scanner's hot loop.
//!
//! [`DecodeTable`] compiles the §6.1 rules of the reference decoder ([`parse::decode`]) for
//! one engine into a 1024-entry table indexed by header bits 31:22 (client and opcode) and
//! a few 64-entry sub-tables, indexed by bits 21:16, for the opcode groups whose meaning
//! also depends on those bits (render 3D sub-opcodes). Every entry is either a length rule
//! `len = (header & mask) + add` or "ask the reference decoder" (unknown opcodes, commands
//! for other engines, anything that is not a plain mask-and-add rule), so the table cannot
//! accept what the reference decoder rejects.
//!
//! The table is built by probing the reference decoder, not written by hand, and the tests
//! check agreement exhaustively over all header bits 31:16 on every engine.

use std::sync::OnceLock;

use super::parse::{self, Cmd, Op, ParseError};
use super::rules::needs_audit;
use crate::host::EngineId;

/// Entries in the top-level table: header bits 31:22.
const TOP: usize = 1 << 10;
/// Entries in a sub-table: header bits 21:16.
const SUB: usize = 1 << 6;

/// How an entry decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `len = (header & mask) + add`, command `op`.
    Len,
    /// Look up sub-table `sub` by header bits 21:16.
    Sub,
    /// Defer to the reference decoder (errors and anything irregular).
    Reference,
}

/// One table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    class: Class,
    op: Op,
    /// The command's length matters but its contents do not: no audit rule looks at it.
    plain: bool,
    add: u8,
    sub: u8,
    mask: u32,
}

const REFERENCE: Entry = Entry {
    class: Class::Reference,
    op: Op::Noop,
    plain: false,
    add: 0,
    sub: 0,
    mask: 0,
};

impl Entry {
    /// A command that needs nothing but its length, and that length in dwords.
    #[cfg(test)]
    pub(crate) fn plain_len(&self, header: u32) -> Option<u32> {
        // `mask` ≤ 0xffff and `add` ≤ 2 by construction (see `probe`): no overflow.
        self.plain
            .then_some((header & self.mask) + u32::from(self.add))
    }
}

/// The §6.1 decoder for one engine as lookup tables (see the module docs).
#[derive(Debug, Clone)]
pub struct DecodeTable {
    engine: EngineId,
    top: Box<[Entry; TOP]>,
    subs: Vec<Entry>,
    /// The skip path's view of the same rules (see [`SkipTable`]).
    skip: SkipTable,
}

impl DecodeTable {
    /// Builds the tables for `engine` from the reference decoder.
    pub fn new(engine: EngineId) -> Self {
        let mut top = Box::new([REFERENCE; TOP]);
        let mut subs = Vec::new();
        for (hi, slot) in (0u32..).zip(top.iter_mut()) {
            let variants: Vec<Entry> = (0..SUB as u32)
                .map(|lo| probe(engine, hi << 22 | lo << 16))
                .collect();
            let first = variants.first().copied().unwrap_or(REFERENCE);
            let uniform = variants.iter().all(|e| *e == first);
            *slot = match u8::try_from(subs.len() / SUB) {
                _ if uniform => first,
                Ok(sub) => {
                    subs.extend_from_slice(&variants);
                    Entry {
                        class: Class::Sub,
                        sub,
                        ..REFERENCE
                    }
                }
                Err(_) => REFERENCE,
            };
        }
        let mut t = Self {
            engine,
            top,
            subs,
            skip: SkipTable::empty(),
        };
        t.skip = SkipTable::new(&t);
        t
    }

    /// The shared tables for `engine`, built on first use.
    pub fn for_engine(engine: EngineId) -> &'static DecodeTable {
        static TABLES: OnceLock<[DecodeTable; 4]> = OnceLock::new();
        let all = TABLES.get_or_init(|| EngineId::ALL.map(DecodeTable::new));
        match engine {
            EngineId::Rcs => &all[0],
            EngineId::Bcs => &all[1],
            EngineId::Vcs => &all[2],
            EngineId::Vecs => &all[3],
        }
    }

    /// The engine these tables decode for.
    pub fn engine(&self) -> EngineId {
        self.engine
    }

    /// The entry for `header`.
    #[inline(always)]
    pub(crate) fn entry(&self, header: u32) -> Entry {
        let e = self
            .top
            .get((header >> 22) as usize)
            .copied()
            .unwrap_or(REFERENCE);
        if e.class != Class::Sub {
            return e;
        }
        let at = usize::from(e.sub) * SUB + ((header >> 16) as usize & (SUB - 1));
        self.subs.get(at).copied().unwrap_or(REFERENCE)
    }

    /// Decodes `header`; always equal to [`parse::decode`] for this engine.
    #[inline]
    pub fn decode(&self, header: u32) -> Result<Cmd, ParseError> {
        let e = self.entry(header);
        match e.class {
            Class::Len => Ok(Cmd {
                header,
                op: e.op,
                len: (header & e.mask) + u32::from(e.add),
            }),
            Class::Sub | Class::Reference => parse::decode(self.engine, header),
        }
    }

    /// [`DecodeTable::decode`] for the scanner's loop: the command's op and length, or
    /// `None` if the header does not decode. Returned as a register pair (a `Result<Cmd,
    /// _>` merged from the table and the reference paths went through the stack, and
    /// reloading it stalled the loop on store forwarding).
    #[inline(always)]
    pub(crate) fn op_len(&self, header: u32) -> Option<(Op, u32)> {
        let e = self.entry(header);
        if e.class == Class::Len {
            // `mask` ≤ 0xffff and `add` ≤ 2 (see `probe`): no overflow.
            return Some((e.op, (header & e.mask) + u32::from(e.add)));
        }
        self.op_len_reference(header)
    }

    #[inline(never)]
    fn op_len_reference(&self, header: u32) -> Option<(Op, u32)> {
        parse::decode(self.engine, header)
            .ok()
            .map(|c| (c.op, c.len))
    }

    /// Skips the commands from dword `i` on that need only their length (see
    /// [`super::rules::needs_audit`]) and lie entirely inside `dwords`. Returns the index
    /// of the first command that needs more (an audit, a decode error, more dwords), or
    /// `dwords.len()`.
    #[inline]
    pub(crate) fn skip_plain(&self, dwords: &[u32], i: usize) -> usize {
        self.skip.skip(dwords, i)
    }
}

/// Skip-rule codes: [`SKIP_STOP`] (the command needs a decode and maybe an audit), two
/// fixed codes for the common rules (tested first, as branches, so the CPU can predict a
/// command's length rule instead of waiting for the table load), and table-defined
/// codes for the other rules.
const SKIP_STOP: u8 = 0;
/// `len = (header & 0xff) + 2`: most 3D state, MI and 2D commands.
const SKIP_FF_2: u8 = 1;
/// `len = 1`.
const SKIP_ONE: u8 = 2;

/// The plain-command length rules as one byte per header bits 31:16 (64 KiB per engine;
/// a batch touches only the few cache lines of the commands it uses): no second level to
/// look up and nothing to decode for the long runs of 3D state that need no audit.
#[derive(Debug, Clone)]
struct SkipTable {
    codes: Box<[u8]>,
    /// `(mask, add)` of each code; `len = (header & mask) + add`.
    rules: Vec<(u32, u32)>,
}

impl SkipTable {
    fn empty() -> Self {
        Self {
            codes: Box::new([]),
            rules: Vec::new(),
        }
    }

    /// Flattens `t`'s plain entries (an entry depends only on header bits 31:16).
    fn new(t: &DecodeTable) -> Self {
        let mut rules = vec![(0, 0), (0xff, 2), (0, 1)];
        let codes = (0u32..=0xffff)
            .map(|hi| {
                let e = t.entry(hi << 16);
                if !e.plain {
                    return SKIP_STOP;
                }
                let rule = (e.mask, u32::from(e.add));
                if let Some(code) = rules.iter().skip(1).position(|r| *r == rule) {
                    // `rules` stays short (a handful of length rules): lossless.
                    return (code + 1) as u8;
                }
                match u8::try_from(rules.len()) {
                    Ok(code) => {
                        rules.push(rule);
                        code
                    }
                    Err(_) => SKIP_STOP,
                }
            })
            .collect();
        Self { codes, rules }
    }

    /// The length of `header` if it is a plain command.
    #[inline(always)]
    fn len(&self, header: u32) -> Option<u32> {
        let code = self
            .codes
            .get((header >> 16) as usize)
            .copied()
            .unwrap_or(SKIP_STOP);
        // `mask` ≤ 0xffff and `add` ≤ 2 (see `probe`): no overflow.
        match code {
            SKIP_FF_2 => Some((header & 0xff) + 2),
            SKIP_ONE => Some(1),
            SKIP_STOP => None,
            _ => {
                let (mask, add) = self.rules.get(usize::from(code)).copied()?;
                Some((header & mask) + add)
            }
        }
    }

    #[inline]
    fn skip(&self, dwords: &[u32], mut i: usize) -> usize {
        while let Some(&h) = dwords.get(i) {
            let Some(len) = self.len(h) else {
                break;
            };
            let end = i.saturating_add(len as usize);
            if end > dwords.len() {
                break;
            }
            i = end;
        }
        i
    }
}

/// The entry for all headers that share `header`'s bits 31:16, from the reference decoder:
/// a length rule if the decoder gives the same op for low bits 0 and 0xffff and the
/// lengths are `add` and `0xffff & mask + add` with a low-bit `mask`; otherwise
/// [`Class::Reference`]. The exhaustive test checks the result against every header.
fn probe(engine: EngineId, header: u32) -> Entry {
    let (Ok(a), Ok(b)) = (
        parse::decode(engine, header & !0xffff),
        parse::decode(engine, header | 0xffff),
    ) else {
        return REFERENCE;
    };
    let Ok(add) = u8::try_from(a.len) else {
        return REFERENCE;
    };
    let mask = b.len.wrapping_sub(a.len);
    let low_bits_mask = mask <= 0xffff && mask & mask.wrapping_add(1) == 0;
    if a.op != b.op || b.len < a.len || !low_bits_mask || add > 2 {
        return REFERENCE;
    }
    Entry {
        class: Class::Len,
        op: a.op,
        plain: !needs_audit(a.op),
        add,
        sub: 0,
        mask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Low 16-bit patterns that exercise every length-field bit alone and together.
    const LOW: [u32; 6] = [0, 0xffff, 0x5555, 0xaaaa, 0x00ff, 0x1234];

    #[test]
    fn table_agrees_with_the_reference_decoder_on_every_opcode() {
        for engine in EngineId::ALL {
            let t = DecodeTable::new(engine);
            for hi in 0u32..=0xffff {
                for lo in LOW {
                    let h = hi << 16 | lo;
                    let want = parse::decode(engine, h);
                    assert_eq!(t.decode(h), want, "{engine} {h:#010x}");
                    let parts = want.ok().map(|c| (c.op, c.len));
                    assert_eq!(t.op_len(h), parts, "{engine} {h:#010x}");
                }
            }
        }
    }

    #[test]
    fn plain_entries_are_exactly_the_unaudited_commands() {
        for engine in EngineId::ALL {
            let t = DecodeTable::new(engine);
            for hi in 0u32..=0xffff {
                for lo in LOW {
                    let h = hi << 16 | lo;
                    let want = parse::decode(engine, h)
                        .ok()
                        .filter(|c| !needs_audit(c.op))
                        .map(|c| c.len);
                    assert_eq!(t.entry(h).plain_len(h), want, "{engine} {h:#010x}");
                }
            }
        }
    }

    #[test]
    fn skip_table_agrees_with_the_plain_entries_on_every_opcode() {
        for engine in EngineId::ALL {
            let t = DecodeTable::new(engine);
            assert!(t.skip.rules.len() < 16, "{engine}: {:?}", t.skip.rules);
            for hi in 0u32..=0xffff {
                for lo in LOW {
                    let h = hi << 16 | lo;
                    assert_eq!(t.skip.len(h), t.entry(h).plain_len(h), "{engine} {h:#010x}");
                }
            }
        }
        // The fixed codes are the common rules.
        let rcs = DecodeTable::for_engine(EngineId::Rcs);
        assert_eq!(rcs.skip.codes[0x7810], SKIP_FF_2, "3DSTATE_VS");
        assert_eq!(rcs.skip.codes[0x0280], SKIP_ONE, "MI_ARB_CHECK");
        assert_eq!(rcs.skip.codes[0x7A00], SKIP_STOP, "PIPE_CONTROL");
    }

    #[test]
    fn most_headers_take_the_table_path() {
        // The point of the table: common commands never reach the reference decoder.
        let t = DecodeTable::new(EngineId::Rcs);
        for h in [
            0x7A00_0004u32,
            0x7810_0007,
            0x7B00_0005,
            0x1100_0001,
            0x0500_0000,
        ] {
            assert_eq!(t.entry(h).class, Class::Len, "{h:#010x}");
        }
        assert!(!t.subs.is_empty(), "render sub-opcodes need sub-tables");
        assert!(DecodeTable::new(EngineId::Vcs).subs.is_empty());
        assert_eq!(t.entry(0xE000_0000).class, Class::Reference);
        for e in EngineId::ALL {
            assert_eq!(DecodeTable::for_engine(e).engine(), e);
        }
    }

    #[test]
    fn skip_plain_stops_at_audited_incomplete_and_unknown_commands() {
        let t = DecodeTable::new(EngineId::Rcs);
        // NOOP, 3DSTATE_VS (9 dwords), LRI (audited).
        let mut d = vec![0u32, 0x7810_0007];
        d.extend([0; 8]);
        d.extend([0x1100_0001, 0x2600, 1]);
        assert_eq!(t.skip_plain(&d, 0), 10);
        assert_eq!(t.skip_plain(&d[..9], 0), 1, "3DSTATE_VS runs past the end");
        assert_eq!(t.skip_plain(&[0, 0xE000_0000], 0), 1, "reserved client");
        assert_eq!(t.skip_plain(&[0, 0], 0), 2);
        assert_eq!(t.skip_plain(&[], 0), 0);
    }
}
