//! The decode's fast path: a serde `Deserializer` over the body's text that
//! reads what serde_json reads, to the same values, and skips the values
//! nobody reads (the `last-applied-configuration` annotation, dense with
//! `\"`, and `managedFields`: half of a typical body) 16 and 64 bytes at a
//! time where serde_json stops at every escape and every token.
//!
//! What it reads, it reads as serde_json does, or not at all: anything it
//! is not sure of (a float, `-0`, a lone surrogate, a struct written as an
//! array, nesting deeper than [`MAX_DEPTH`], any syntax error, any error of
//! the types themselves) is [`Unsupported`], and the caller decodes the
//! body with serde_json instead, which then decides, and words, what is
//! wrong.
//!
//! What it skips, it delimits. A skipped string is checked as serde_json
//! checks one (control characters, escapes), a skipped number or literal
//! too; a skipped object or array is followed only by its brackets and its
//! strings' quotes and escapes, and what is between them is not checked,
//! as none of it is built. So every body serde_json accepts decodes to the
//! same value either way, and a body malformed only inside an object or
//! array nobody reads is accepted, as one with a value of the wrong type
//! there already is (kube's decoder, which builds every field, refuses
//! both; the API server sends neither: it decoded the object first).

use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};

/// Deeper than this, the body goes to serde_json (whose limit is 128).
const MAX_DEPTH: u32 = 100;

/// The reader met something it leaves to serde_json.
#[derive(Debug)]
pub struct Unsupported;

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("left to serde_json")
    }
}

impl std::error::Error for Unsupported {}

impl de::Error for Unsupported {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

type Result<T> = std::result::Result<T, Unsupported>;

/// Decodes `text` (one JSON value, whitespace around it allowed) as `T`, or
/// says it leaves it to serde_json.
pub fn from_str<'de, T: de::Deserialize<'de>>(text: &'de str) -> Result<T> {
    let mut reader = Reader {
        text,
        pos: 0,
        depth: 0,
    };
    let value = T::deserialize(&mut reader)?;
    match reader.skip_whitespace() {
        None => Ok(value),
        Some(_) => Err(Unsupported),
    }
}

struct Reader<'de> {
    text: &'de str,
    pos: usize,
    depth: u32,
}

impl<'de> Reader<'de> {
    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not whitespace, not consumed.
    #[inline]
    fn skip_whitespace(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        next_token(bytes, &mut self.pos).ok()
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.skip_whitespace() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        self.pos = literal(self.bytes(), self.pos, word)?;
        Ok(())
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Unsupported);
        }
        Ok(())
    }

    /// A string, the reader on its opening quote: borrowed from the body
    /// when it has no escapes, else unescaped as serde_json unescapes.
    /// Inlined for the string that closes within 32 bytes.
    #[inline(always)]
    fn string(&mut self) -> Result<Text<'de>> {
        let start = self.pos + 1;
        match closes_within_32(self.bytes(), start) {
            Some(end) => {
                self.pos = end;
                Ok(Text::Borrowed(&self.text[start..end - 1]))
            }
            None => self.long_string(start),
        }
    }

    #[inline(never)]
    fn long_string(&mut self, start: usize) -> Result<Text<'de>> {
        let end = find_special(self.bytes(), start);
        match self.bytes().get(end) {
            Some(b'"') => {
                self.pos = end + 1;
                Ok(Text::Borrowed(&self.text[start..end]))
            }
            Some(b'\\') => self.unescape(start, end),
            _ => Err(Unsupported),
        }
    }

    #[cold]
    fn unescape(&mut self, start: usize, first_escape: usize) -> Result<Text<'de>> {
        let bytes = self.bytes();
        let mut out = String::with_capacity(first_escape - start + 16);
        let mut run = start;
        let mut i = first_escape;
        loop {
            match *bytes.get(i).ok_or(Unsupported)? {
                b'"' => {
                    out.push_str(&self.text[run..i]);
                    self.pos = i + 1;
                    return Ok(Text::Owned(out));
                }
                b'\\' => {
                    out.push_str(&self.text[run..i]);
                    let (ch, len) = escape(&bytes[i + 1..])?;
                    out.push(ch);
                    i += 1 + len;
                    run = i;
                }
                0..=0x1f => return Err(Unsupported),
                _ => i += 1,
            }
        }
    }

    /// An integer as serde_json reads it: `u64` when not negative, `i64`
    /// when negative; anything else (a fraction, an exponent, `-0`, out of
    /// range) is left to serde_json, which would make it a float.
    fn integer(&mut self) -> Result<Integer> {
        let bytes = self.bytes();
        let negative = bytes.get(self.pos) == Some(&b'-');
        let mut i = self.pos + usize::from(negative);
        let first = i;
        let mut value: u64 = 0;
        while let Some(&b @ b'0'..=b'9') = bytes.get(i) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .ok_or(Unsupported)?;
            i += 1;
        }
        let digits = i - first;
        if digits == 0 || (digits > 1 && bytes[first] == b'0') {
            return Err(Unsupported);
        }
        if matches!(bytes.get(i), Some(b'.' | b'e' | b'E')) {
            return Err(Unsupported);
        }
        self.pos = i;
        if !negative {
            return Ok(Integer::Unsigned(value));
        }
        match value {
            0 => Err(Unsupported),
            v if v <= i64::MAX as u64 => Ok(Integer::Signed(-(v as i64))),
            v if v == i64::MAX as u64 + 1 => Ok(Integer::Signed(i64::MIN)),
            _ => Err(Unsupported),
        }
    }

    /// Skips one value: a string, number or literal checked as serde_json
    /// checks one it ignores, an object or array delimited by its brackets
    /// (the module's doc says why).
    fn skip_value(&mut self) -> Result<()> {
        let bytes = self.bytes();
        let mut pos = self.pos;
        self.pos = match next_token(bytes, &mut pos)? {
            b'"' => skip_string(bytes, pos + 1)?,
            b'{' | b'[' => skip_brackets(bytes, pos)?,
            b't' => literal(bytes, pos, b"true")?,
            b'f' => literal(bytes, pos, b"false")?,
            b'n' => literal(bytes, pos, b"null")?,
            b'-' | b'0'..=b'9' => skip_number(bytes, pos)?,
            _ => return Err(Unsupported),
        };
        Ok(())
    }

    fn map<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        self.pos += 1;
        self.enter()?;
        let value = visitor.visit_map(Entries {
            reader: self,
            first: true,
        })?;
        self.expect(b'}')?;
        self.depth -= 1;
        Ok(value)
    }

    fn seq<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        self.pos += 1;
        self.enter()?;
        let value = visitor.visit_seq(Elements {
            reader: self,
            first: true,
        })?;
        self.expect(b']')?;
        self.depth -= 1;
        Ok(value)
    }
}

/// The next byte that is not whitespace, not consumed; the end of the
/// text is an error.
#[inline(always)]
fn next_token(bytes: &[u8], pos: &mut usize) -> Result<u8> {
    while let Some(&b) = bytes.get(*pos) {
        match b {
            b' ' | b'\n' | b'\t' | b'\r' => *pos += 1,
            _ => return Ok(b),
        }
    }
    Err(Unsupported)
}

/// The index just past the bracket that closes the one at `open`,
/// following only brackets and strings (their quotes and escapes): 64
/// bytes at a time where SSE2 is there, the rest byte by byte.
fn skip_brackets(bytes: &[u8], open: usize) -> Result<usize> {
    let mut scan = Brackets::default();
    #[cfg(target_arch = "x86_64")]
    let open = match blocks::brackets(bytes, open, &mut scan) {
        blocks::Scan::Closed(end) => return Ok(end),
        blocks::Scan::Tail(rest) => rest,
    };
    scan.rest(bytes, open)
}

/// Where a bracket scan stands between two chunks.
#[derive(Debug, Default, PartialEq)]
struct Brackets {
    /// Brackets open, the first included.
    depth: u64,
    in_string: bool,
    /// The next byte is escaped by a backslash.
    escaped: bool,
}

impl Brackets {
    /// The rest of the text from `from`, byte by byte.
    fn rest(mut self, bytes: &[u8], from: usize) -> Result<usize> {
        // A backslash escapes only inside a string (outside one it is not
        // JSON, and the chunks may have carried it).
        self.escaped &= self.in_string;
        for (i, &b) in bytes.iter().enumerate().skip(from) {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Ok(i + 1);
                    }
                }
                _ => {}
            }
        }
        Err(Unsupported)
    }
}

/// `word` at `pos`: the index after it.
fn literal(bytes: &[u8], pos: usize, word: &[u8]) -> Result<usize> {
    if bytes[pos..].starts_with(word) {
        Ok(pos + word.len())
    } else {
        Err(Unsupported)
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` at `pos`: the index
/// after it.
fn skip_number(bytes: &[u8], pos: usize) -> Result<usize> {
    let digits = |mut i: usize| {
        let from = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i, i - from)
    };
    let mut i = pos + usize::from(bytes[pos] == b'-');
    let (end, n) = digits(i);
    if n == 0 || (n > 1 && bytes[i] == b'0') {
        return Err(Unsupported);
    }
    i = end;
    if bytes.get(i) == Some(&b'.') {
        let (end, n) = digits(i + 1);
        if n == 0 {
            return Err(Unsupported);
        }
        i = end;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let (end, n) = digits(i);
        if n == 0 {
            return Err(Unsupported);
        }
        i = end;
    }
    Ok(i)
}

/// One escape, the bytes after its backslash: the character and how many
/// bytes it took. `\u` escapes as serde_json decodes them into a string
/// (a surrogate only as half of a pair).
fn escape(after: &[u8]) -> Result<(char, usize)> {
    let ch = match *after.first().ok_or(Unsupported)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\x08',
        b'f' => '\x0c',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let first = hex4(after.get(1..5))?;
            if !(0xD800..0xE000).contains(&first) {
                return Ok((char::from_u32(first).ok_or(Unsupported)?, 5));
            }
            if first >= 0xDC00 || after.get(5..7) != Some(b"\\u") {
                return Err(Unsupported);
            }
            let second = hex4(after.get(7..11))?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(Unsupported);
            }
            let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            return Ok((char::from_u32(code).ok_or(Unsupported)?, 11));
        }
        _ => return Err(Unsupported),
    };
    Ok((ch, 1))
}

fn hex4(digits: Option<&[u8]>) -> Result<u32> {
    let digits = digits.ok_or(Unsupported)?;
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16).ok_or(Unsupported)?;
        Ok(acc * 16 + v)
    })
}

/// The index just past the closing quote of a string whose contents start
/// at `i`, when it closes within 32 bytes without an escape, as most keys
/// and names do; `None` leaves it to a longer scan from `i`.
#[inline(always)]
fn closes_within_32(bytes: &[u8], i: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(window) = bytes.get(i..i + 32) {
        // Most keys close within 16 bytes: the second 16 only when not.
        let first = blocks::specials(window, 0);
        let mask = match first {
            0 => blocks::specials(window, 16) << 16,
            _ => first,
        };
        let at = mask.trailing_zeros() as usize;
        if window.get(at) == Some(&b'"') {
            return Some(i + at + 1);
        }
    }
    None
}

/// The index just past the closing quote of the string whose contents
/// start at `i`, checked as serde_json checks a string it ignores: no
/// control characters, only JSON's escapes (`\u` with four hex digits).
/// Inlined for the string that closes within 32 bytes; the rest is
/// [`skip_long_string`].
#[inline(always)]
fn skip_string(bytes: &[u8], i: usize) -> Result<usize> {
    match closes_within_32(bytes, i) {
        Some(end) => Ok(end),
        None => skip_long_string(bytes, i),
    }
}

#[inline(never)]
fn skip_long_string(bytes: &[u8], mut i: usize) -> Result<usize> {
    #[cfg(target_arch = "x86_64")]
    match blocks::skip(bytes, i)? {
        blocks::Scan::Closed(end) => return Ok(end),
        blocks::Scan::Tail(at) => i = at,
    }
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => return Ok(i + 1),
            b'\\' => i += 1 + escape_len(&bytes[i + 1..])?,
            0..=0x1f => return Err(Unsupported),
            _ => i += 1,
        }
    }
    Err(Unsupported)
}

/// How many bytes the escape whose backslash was just passed takes, checked
/// as serde_json's `ignore_escape` checks it (no surrogate pairing: an
/// ignored string may hold any `\u` escape).
#[inline(always)]
fn escape_len(after: &[u8]) -> Result<usize> {
    match ESCAPE_LEN[usize::from(*after.first().ok_or(Unsupported)?)] {
        1 => Ok(1),
        5 => match after.get(1..5) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(5),
            _ => Err(Unsupported),
        },
        _ => Err(Unsupported),
    }
}

/// By the byte after a backslash: 1 for JSON's one-letter escapes, 5 for
/// `u` (four hex digits follow), 0 where JSON has no escape.
static ESCAPE_LEN: [u8; 256] = {
    let mut table = [0; 256];
    let mut one = 0;
    let letters = b"\"\\/bfnrt";
    while one < letters.len() {
        table[letters[one] as usize] = 1;
        one += 1;
    }
    table[b'u' as usize] = 5;
    table
};

/// The index of the first quote, backslash or control character at or
/// after `i`, or the length of `bytes` when there is none.
#[inline]
fn find_special(bytes: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    while i + 16 <= bytes.len() {
        let mask = blocks::specials(bytes, i);
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    while i < bytes.len() && !matches!(bytes[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    i
}

/// The scans 16 and 64 bytes at a time with SSE2 (part of every x86_64
/// CPU): a compare per kind of byte (quote, backslash, control character,
/// bracket) gives a bit per byte, and a string's escapes and ends, and a
/// value's brackets, are found on those bits. Where the CPU has AVX2,
/// PCLMULQDQ and POPCNT (every x86_64 CPU since 2013-2015), the 64-byte
/// scans are compiled a second time for them and chosen at run time: 32
/// bytes a compare, a string's inside by one carry-less multiplication, a
/// chunk's brackets counted by one instruction. The image targets the
/// x86_64 baseline, so nothing else may assume them.
#[cfg(target_arch = "x86_64")]
mod blocks {
    use super::{Brackets, Result, Unsupported, escape_len};
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    #[cfg(test)]
    thread_local! {
        /// Set by the tests to hold the SSE2 scans to the same answers as
        /// the wide ones on a CPU that has both.
        pub static NARROW: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Whether the wide scans may run: the CPU has AVX2, PCLMULQDQ and
    /// POPCNT (std caches the answer; this is a load and a test).
    #[inline(always)]
    fn wide() -> bool {
        #[cfg(test)]
        if NARROW.with(std::cell::Cell::get) {
            return false;
        }
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("popcnt")
    }

    /// Where a scan stopped: just past the closing quote (or bracket), or
    /// where the rest of the text, left to the byte-by-byte scan, starts.
    #[derive(Debug, PartialEq)]
    pub enum Scan {
        Closed(usize),
        Tail(usize),
    }

    /// The 16 bytes from `i`.
    #[inline(always)]
    fn load(bytes: &[u8], i: usize) -> __m128i {
        assert!(i + 16 <= bytes.len());
        // SAFETY: the 16 bytes from `i` are in `bytes` (asserted), and
        // loadu needs no alignment.
        unsafe { _mm_loadu_si128(bytes.as_ptr().add(i).cast::<__m128i>()) }
    }

    // SAFETY (of the `unsafe` blocks below that hold no load): SSE2 is
    // part of x86_64, so its instructions are always there.

    /// `byte` in every lane.
    #[inline(always)]
    fn splat(byte: u8) -> __m128i {
        unsafe { _mm_set1_epi8(byte as i8) }
    }

    #[inline(always)]
    fn or(a: __m128i, b: __m128i) -> __m128i {
        unsafe { _mm_or_si128(a, b) }
    }

    /// The lanes of `block` equal to `byte`.
    #[inline(always)]
    fn equal(block: __m128i, byte: u8) -> __m128i {
        unsafe { _mm_cmpeq_epi8(block, splat(byte)) }
    }

    /// The lanes of `block` holding a control character: a byte is at most
    /// 0x1f when max(byte, 0x1f) is 0x1f.
    #[inline(always)]
    fn control(block: __m128i) -> __m128i {
        let limit = splat(0x1f);
        unsafe { _mm_cmpeq_epi8(_mm_max_epu8(block, limit), limit) }
    }

    /// A bit per lane, bit 0 for the first byte.
    #[inline(always)]
    fn bits(lanes: __m128i) -> u64 {
        u64::from(unsafe { _mm_movemask_epi8(lanes) } as u16)
    }

    /// The 64 bytes from `i` as one mask per kind of byte, `kinds` giving
    /// a block's.
    #[inline(always)]
    fn chunk<const N: usize>(
        bytes: &[u8],
        i: usize,
        kinds: impl Fn(__m128i) -> [u64; N],
    ) -> [u64; N] {
        let mut masks = [0; N];
        for k in 0..4 {
            for (mask, block) in masks.iter_mut().zip(kinds(load(bytes, i + 16 * k))) {
                *mask |= block << (16 * k);
            }
        }
        masks
    }

    /// The quotes, backslashes and control characters of the 16 bytes
    /// from `i`, one bit each (bit 0 for byte `i`).
    #[inline(always)]
    pub fn specials(bytes: &[u8], i: usize) -> u32 {
        let block = load(bytes, i);
        let special = or(or(equal(block, b'"'), equal(block, b'\\')), control(block));
        bits(special) as u32
    }

    /// A chunk's quotes, backslashes and control characters.
    #[inline(always)]
    fn string_masks<const WIDE: bool>(bytes: &[u8], i: usize) -> [u64; 3] {
        if WIDE {
            // SAFETY: `WIDE` is set only in the functions compiled for
            // AVX2, called only where the CPU has it.
            return unsafe { wide::string_masks(bytes, i) };
        }
        chunk(bytes, i, |block| {
            [
                bits(equal(block, b'"')),
                bits(equal(block, b'\\')),
                bits(control(block)),
            ]
        })
    }

    /// A chunk's quotes, backslashes, opening and closing brackets.
    #[inline(always)]
    fn bracket_masks<const WIDE: bool>(bytes: &[u8], i: usize) -> [u64; 4] {
        if WIDE {
            // SAFETY: as in `string_masks`.
            return unsafe { wide::bracket_masks(bytes, i) };
        }
        chunk(bytes, i, |block| {
            // `[` and `]` are `{` and `}` without the 0x20 bit.
            let folded = or(block, splat(0x20));
            [
                bits(equal(block, b'"')),
                bits(equal(block, b'\\')),
                bits(equal(folded, b'{')),
                bits(equal(folded, b'}')),
            ]
        })
    }

    /// Each bit the XOR of it and all below it: between an opening quote
    /// and its closing one, 1. A carry-less multiplication by all ones
    /// where PCLMULQDQ is there, six shifts where not.
    #[inline(always)]
    fn prefix_xor<const WIDE: bool>(mut bits: u64) -> u64 {
        if WIDE {
            // SAFETY: as in `string_masks`: PCLMULQDQ comes with `WIDE`.
            return unsafe { wide::prefix_xor(bits) };
        }
        for shift in [1, 2, 4, 8, 16, 32] {
            bits ^= bits << shift;
        }
        bits
    }

    /// The masks 32 bytes a compare, and the prefix XOR in one
    /// instruction.
    mod wide {
        use std::arch::x86_64::{
            __m256i, _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set_epi64x, _mm_set1_epi8,
            _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_max_epu8, _mm256_movemask_epi8,
            _mm256_or_si256, _mm256_set1_epi8,
        };

        /// The 32 bytes from `i`.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn load(bytes: &[u8], i: usize) -> __m256i {
            assert!(i + 32 <= bytes.len());
            // SAFETY: the 32 bytes from `i` are in `bytes` (asserted), and
            // loadu needs no alignment.
            unsafe { _mm256_loadu_si256(bytes.as_ptr().add(i).cast::<__m256i>()) }
        }

        #[target_feature(enable = "avx2")]
        #[inline]
        fn equal(block: __m256i, byte: u8) -> __m256i {
            _mm256_cmpeq_epi8(block, _mm256_set1_epi8(byte as i8))
        }

        /// A bit per lane, bit 0 for the first byte.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn bits(lanes: __m256i) -> u64 {
            u64::from(_mm256_movemask_epi8(lanes) as u32)
        }

        /// The 32 bytes' quotes, backslashes and control characters.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn string_kinds(block: __m256i) -> [u64; 3] {
            let limit = _mm256_set1_epi8(0x1f);
            let control = _mm256_cmpeq_epi8(_mm256_max_epu8(block, limit), limit);
            [
                bits(equal(block, b'"')),
                bits(equal(block, b'\\')),
                bits(control),
            ]
        }

        /// The 32 bytes' quotes, backslashes, opening and closing
        /// brackets (`[` and `]` are `{` and `}` without the 0x20 bit).
        #[target_feature(enable = "avx2")]
        #[inline]
        fn bracket_kinds(block: __m256i) -> [u64; 4] {
            let folded = _mm256_or_si256(block, _mm256_set1_epi8(0x20));
            [
                bits(equal(block, b'"')),
                bits(equal(block, b'\\')),
                bits(equal(folded, b'{')),
                bits(equal(folded, b'}')),
            ]
        }

        /// The masks of two halves of a chunk as the chunk's.
        #[inline(always)]
        fn join<const N: usize>(low: [u64; N], high: [u64; N]) -> [u64; N] {
            std::array::from_fn(|k| low[k] | high[k] << 32)
        }

        #[target_feature(enable = "avx2")]
        #[inline]
        pub fn string_masks(bytes: &[u8], i: usize) -> [u64; 3] {
            join(
                string_kinds(load(bytes, i)),
                string_kinds(load(bytes, i + 32)),
            )
        }

        #[target_feature(enable = "avx2")]
        #[inline]
        pub fn bracket_masks(bytes: &[u8], i: usize) -> [u64; 4] {
            join(
                bracket_kinds(load(bytes, i)),
                bracket_kinds(load(bytes, i + 32)),
            )
        }

        #[target_feature(enable = "pclmulqdq")]
        #[inline]
        pub fn prefix_xor(bits: u64) -> u64 {
            let product =
                _mm_clmulepi64_si128(_mm_set_epi64x(0, bits as i64), _mm_set1_epi8(-1), 0);
            _mm_cvtsi128_si64(product) as u64
        }
    }

    /// A string from `i`, 64 bytes at a time,
    /// escapes found by bit arithmetic rather than one by one: the
    /// `last-applied-configuration` annotation has a `\"` every few
    /// bytes. Escapes other than `\"` and `\\` (rare) are checked one by
    /// one.
    pub fn skip(bytes: &[u8], i: usize) -> Result<Scan> {
        if wide() {
            // SAFETY: the CPU has the features `skip_wide` is compiled for.
            unsafe { skip_wide(bytes, i) }
        } else {
            skip_in::<false>(bytes, i)
        }
    }

    #[target_feature(enable = "avx2,pclmulqdq,popcnt")]
    fn skip_wide(bytes: &[u8], i: usize) -> Result<Scan> {
        skip_in::<true>(bytes, i)
    }

    /// [`skip`] with 32-byte compares (`WIDE`, only where [`wide`] holds)
    /// or 16-byte ones.
    #[inline(always)]
    fn skip_in<const WIDE: bool>(bytes: &[u8], mut i: usize) -> Result<Scan> {
        // Whether the byte at `i` is escaped by a backslash before it.
        let mut escaped_carry = 0u64;
        while i + 64 <= bytes.len() {
            let [quote, backslash, control] = string_masks::<WIDE>(bytes, i);
            let escaped = escaped_by(backslash, &mut escaped_carry);
            let closing = quote & !escaped;
            // The bytes of the string in this chunk: those before its
            // closing quote.
            let inside = if closing == 0 {
                !0
            } else {
                (closing & closing.wrapping_neg()) - 1
            };
            if control & inside != 0 {
                return Err(Unsupported);
            }
            let mut others = escaped & inside & !(quote | backslash);
            while others != 0 {
                let at = i + others.trailing_zeros() as usize;
                escape_len(&bytes[at..])?;
                others &= others - 1;
            }
            if closing != 0 {
                return Ok(Scan::Closed(i + closing.trailing_zeros() as usize + 1));
            }
            i += 64;
        }
        // 16 bytes at a time, on the backslash of a pending escape.
        let mut i = i - escaped_carry as usize;
        'blocks: while i + 16 <= bytes.len() {
            let mut mask = specials(bytes, i);
            while mask != 0 {
                let at = i + mask.trailing_zeros() as usize;
                match bytes[at] {
                    b'"' => return Ok(Scan::Closed(at + 1)),
                    b'\\' => {
                        let next = at + 1 + escape_len(&bytes[at + 1..])?;
                        if next >= i + 16 {
                            i = next;
                            continue 'blocks;
                        }
                        mask &= !0u32 << (next - i);
                    }
                    _ => return Err(Unsupported),
                }
            }
            i += 16;
        }
        Ok(Scan::Tail(i))
    }

    /// The bytes of a chunk that a backslash escapes (the one after each
    /// backslash that is not itself escaped), `carry` saying whether the
    /// chunk's first byte is escaped and set for the next chunk's: the
    /// odd-length runs of backslashes, found with one addition (as
    /// simdjson finds them).
    #[inline(always)]
    fn escaped_by(backslash: u64, carry: &mut u64) -> u64 {
        const EVEN: u64 = 0x5555_5555_5555_5555;
        let backslash = backslash & !*carry;
        let follows_backslash = (backslash << 1) | *carry;
        let odd_starts = backslash & !EVEN & !follows_backslash;
        let (even_starts_end, overflow) = odd_starts.overflowing_add(backslash);
        *carry = u64::from(overflow);
        (EVEN ^ (even_starts_end << 1)) & follows_backslash
    }

    /// A bracket scan from `i`, 64 bytes at a time: [`Scan::Closed`] just
    /// past the bracket that brings the depth to 0, else [`Scan::Tail`]
    /// where fewer than 64 bytes are left, `scan` saying where it stands.
    /// Strings are found as simdjson finds them: the quotes no backslash
    /// escapes, and between each pair (a prefix XOR), the inside.
    pub fn brackets(bytes: &[u8], i: usize, scan: &mut Brackets) -> Scan {
        if wide() {
            // SAFETY: the CPU has the features `brackets_wide` is compiled
            // for.
            unsafe { brackets_wide(bytes, i, scan) }
        } else {
            brackets_in::<false>(bytes, i, scan)
        }
    }

    #[target_feature(enable = "avx2,pclmulqdq,popcnt")]
    fn brackets_wide(bytes: &[u8], i: usize, scan: &mut Brackets) -> Scan {
        brackets_in::<true>(bytes, i, scan)
    }

    /// [`brackets`] with 32-byte compares (`WIDE`, only where [`wide`]
    /// holds) or 16-byte ones.
    #[inline(always)]
    fn brackets_in<const WIDE: bool>(bytes: &[u8], mut i: usize, scan: &mut Brackets) -> Scan {
        while i + 64 <= bytes.len() {
            let [quote, backslash, open, close] = bracket_masks::<WIDE>(bytes, i);
            let mut carry = u64::from(scan.escaped);
            let escaped = escaped_by(backslash, &mut carry);
            scan.escaped = carry == 1;
            let mut inside = prefix_xor::<WIDE>(quote & !escaped);
            if scan.in_string {
                inside = !inside;
            }
            scan.in_string = inside >> 63 == 1;
            let (open, close) = (open & !inside, close & !inside);
            // Only a closing bracket lowers the depth: with fewer of them
            // than brackets open, it cannot reach 0 here.
            if scan.depth > u64::from(close.count_ones()) {
                scan.depth =
                    scan.depth + u64::from(open.count_ones()) - u64::from(close.count_ones());
                i += 64;
                continue;
            }
            let mut brackets = open | close;
            while brackets != 0 {
                let at = brackets.trailing_zeros();
                if open >> at & 1 == 1 {
                    scan.depth += 1;
                } else {
                    scan.depth -= 1;
                    if scan.depth == 0 {
                        return Scan::Closed(i + at as usize + 1);
                    }
                }
                brackets &= brackets - 1;
            }
            i += 64;
        }
        Scan::Tail(i)
    }
}

enum Text<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> Text<'de> {
    fn visit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Text::Borrowed(s) => visitor.visit_borrowed_str(s),
            Text::Owned(s) => visitor.visit_string(s),
        }
    }
}

enum Integer {
    Unsigned(u64),
    Signed(i64),
}

impl Integer {
    fn visit<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Integer::Unsigned(v) => visitor.visit_u64(v),
            Integer::Signed(v) => visitor.visit_i64(v),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Unsupported;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace().ok_or(Unsupported)? {
            b'n' => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'-' | b'0'..=b'9' => self.integer()?.visit(visitor),
            b'"' => self.string()?.visit(visitor),
            b'[' => self.seq(visitor),
            b'{' => self.map(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace() {
            Some(b't' | b'f') => self.deserialize_any(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace() {
            Some(b'-' | b'0'..=b'9') => self.integer()?.visit(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace() {
            Some(b'"') => self.string()?.visit(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.skip_whitespace() == Some(b'n') {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace() {
            Some(b'n') => self.deserialize_any(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace() {
            Some(b'[') => self.seq(visitor),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_whitespace() {
            Some(b'{') => self.map(visitor),
            _ => Err(Unsupported),
        }
    }

    /// Only as an object (serde_json also reads a struct from an array).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_map(visitor)
    }

    /// Only a unit variant written as a string (`"CREATE"`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.skip_whitespace() {
            Some(b'"') => visitor.visit_enum(UnitVariant { reader: self }),
            _ => Err(Unsupported),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip_value()?;
        visitor.visit_unit()
    }

    // Never asked for by the types decoded here; serde_json's answer is
    // left to serde_json.
    fn deserialize_i128<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_u128<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_char<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value> {
        Err(Unsupported)
    }
}

/// An object's entries.
struct Entries<'a, 'de> {
    reader: &'a mut Reader<'de>,
    first: bool,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = Unsupported;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let reader = &mut *self.reader;
        let mut next = reader.skip_whitespace();
        if next == Some(b'}') {
            return Ok(None);
        }
        if !std::mem::take(&mut self.first) {
            if next != Some(b',') {
                return Err(Unsupported);
            }
            reader.pos += 1;
            next = reader.skip_whitespace();
        }
        if next != Some(b'"') {
            return Err(Unsupported);
        }
        seed.deserialize(Key { reader }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.reader.expect(b':')?;
        seed.deserialize(&mut *self.reader)
    }
}

/// An array's elements.
struct Elements<'a, 'de> {
    reader: &'a mut Reader<'de>,
    first: bool,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Unsupported;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let reader = &mut *self.reader;
        if reader.skip_whitespace() == Some(b']') {
            return Ok(None);
        }
        if !std::mem::take(&mut self.first) {
            reader.expect(b',')?;
            if reader.skip_whitespace() == Some(b']') {
                return Err(Unsupported);
            }
        }
        seed.deserialize(&mut *reader).map(Some)
    }
}

/// An object's key, the reader on its opening quote: always a string.
struct Key<'a, 'de> {
    reader: &'a mut Reader<'de>,
}

impl<'de> de::Deserializer<'de> for Key<'_, 'de> {
    type Error = Unsupported;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.reader.string()?.visit(visitor)
    }

    // Keys read as numbers, options or anything but a string: serde_json's
    // rules for those are its own.
    fn deserialize_option<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value> {
        Err(Unsupported)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// An enum written as the name of a unit variant.
struct UnitVariant<'a, 'de> {
    reader: &'a mut Reader<'de>,
}

impl<'de> de::EnumAccess<'de> for UnitVariant<'_, 'de> {
    type Error = Unsupported;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let variant = seed.deserialize(Key {
            reader: &mut *self.reader,
        })?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'_, 'de> {
    type Error = Unsupported;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _: T) -> Result<T::Value> {
        Err(Unsupported)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
    fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], _: V) -> Result<V::Value> {
        Err(Unsupported)
    }
}

#[cfg(test)]
mod tests;
