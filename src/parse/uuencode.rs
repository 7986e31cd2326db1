//! Files pasted into a text body with uuencode (`begin 644 name` … `end`, or the
//! `begin-base64` form ending in `====`), as old mail programs, scripts and some gateways
//! still send them. They are decoded into attachments and cut out of the text, so that the
//! thread shows the words and not lines of encoded bytes.
//!
//! The text has already been normalised (LF line endings, trailing blanks removed). That
//! loses nothing here: a uuencoded line says how many bytes it holds, and the blanks a
//! normaliser removes from its end stand for zero bits, so short lines are padded back.

use base64::Engine;

/// One decoded file with the name its `begin` line gave (not yet made safe).
#[derive(Debug, PartialEq, Eq)]
pub struct UuFile {
    pub name: String,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Form {
    Classic,
    Base64,
}

/// Finds the encoded files in `text` (at most `max_files`) and returns them with the text
/// left once their blocks are cut out (`None` when nothing was found). Every line is looked
/// at a bounded number of times, so the work is linear in the text's length whatever it
/// holds (a block that turns out not to be one is resumed from the line that broke it).
pub fn extract(text: &str, max_files: usize) -> (Vec<UuFile>, Option<String>) {
    let mut files = Vec::new();
    // Most texts have no line starting with `begin`: leave them without splitting lines.
    if !(text.starts_with("begin") || text.contains("\nbegin")) {
        return (files, None);
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < lines.len() && files.len() < max_files {
        let Some((form, name)) = begin_line(lines[i]) else {
            i += 1;
            continue;
        };
        let body = &lines[i + 1..];
        let decoded = match form {
            Form::Classic => decode_classic(body),
            Form::Base64 => decode_base64(body),
        };
        match decoded {
            Ok((data, used)) => {
                files.push(UuFile { name: name.to_string(), data });
                cut.push((i, i + used));
                i += used + 1;
            }
            // Lines before the one that broke the block were encoded data, and a `begin`
            // line never is, so scanning goes on from the breaking line.
            Err(valid) => i += valid + 1,
        }
    }
    if cut.is_empty() {
        return (files, None);
    }
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    let mut next = 0;
    for (first, last) in cut {
        kept.extend_from_slice(&lines[next..first]);
        next = last + 1;
        // One blank line, not two, where a block stood between blank lines.
        let blank_before = kept.last().is_none_or(|l| l.trim().is_empty());
        if blank_before && lines.get(next).is_some_and(|l| l.trim().is_empty()) {
            next += 1;
        }
    }
    kept.extend_from_slice(&lines[next.min(lines.len())..]);
    (files, Some(super::normalise_text(&kept.join("\n"))))
}

/// `begin <mode> <name>` or `begin-base64 <mode> <name>`, the mode three or four octal digits.
fn begin_line(line: &str) -> Option<(Form, &str)> {
    let line = line.trim_end_matches('\r');
    let (form, rest) = if let Some(rest) = line.strip_prefix("begin-base64 ") {
        (Form::Base64, rest)
    } else {
        (Form::Classic, line.strip_prefix("begin ")?)
    };
    let (mode, name) = rest.split_once(' ')?;
    let octal = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let name = name.trim();
    (octal && !name.is_empty()).then_some((form, name))
}

/// Decodes classic uuencoded lines up to `end`. `Ok((bytes, lines used including end))`,
/// or `Err(n)` when line `n` is neither data nor the end (or the text ends first).
fn decode_classic(lines: &[&str]) -> Result<(Vec<u8>, usize), usize> {
    let mut data = Vec::new();
    let mut ended = false;
    for (k, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches('\r').as_bytes();
        if line == b"end" {
            return Ok((data, k + 1));
        }
        if ended {
            return Err(k);
        }
        // A zero-length line (a backquote, or a blank that normalising removed) closes the data.
        let Some((&first, rest)) = line.split_first() else {
            ended = true;
            continue;
        };
        let Some(count) = sixbit(first) else { return Err(k) };
        if count == 0 {
            ended = true;
            continue;
        }
        let count = usize::from(count);
        let groups = count.div_ceil(3);
        // Some encoders add a checksum character; anything longer is not uuencode.
        if rest.len() > groups * 4 + 1 || rest.iter().any(|&c| sixbit(c).is_none()) {
            return Err(k);
        }
        let start = data.len();
        for g in 0..groups {
            // Characters missing at the end were blanks: zero bits.
            let c = |n: usize| rest.get(g * 4 + n).and_then(|&c| sixbit(c)).map_or(0u32, u32::from);
            let bits = (c(0) << 18) | (c(1) << 12) | (c(2) << 6) | c(3);
            data.extend_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]);
        }
        data.truncate(start + count);
    }
    Err(lines.len())
}

/// Decodes `begin-base64` lines up to `====`.
fn decode_base64(lines: &[&str]) -> Result<(Vec<u8>, usize), usize> {
    let mut encoded = Vec::new();
    for (k, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches('\r').trim_end();
        if line == "====" {
            let data = base64::engine::general_purpose::STANDARD.decode(&encoded).map_err(|_| k)?;
            return Ok((data, k + 1));
        }
        if !line.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
            return Err(k);
        }
        encoded.extend_from_slice(line.as_bytes());
    }
    Err(lines.len())
}

/// The six bits a uuencode character stands for (a backquote is zero, like a blank).
fn sixbit(c: u8) -> Option<u8> {
    (0x20..=0x60).contains(&c).then(|| (c - 0x20) & 0x3F)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn characters_out_of_range_stand_for_nothing() {
        assert_eq!(sixbit(b'\n'), None);
        assert_eq!(sixbit(0x00), None);
        assert_eq!(sixbit(0x7F), None);
        assert_eq!(sixbit(b' '), Some(0));
        assert_eq!(sixbit(b'`'), Some(0));
        assert_eq!(sixbit(b'_'), Some(63));
    }

    /// Classic uuencoding, as the `uuencode` program writes it (backquote for zero).
    pub(crate) fn encode(name: &str, data: &[u8]) -> String {
        let ch = |v: u32| if v == 0 { '`' } else { char::from(0x20 + v as u8) };
        let mut out = format!("begin 644 {name}\n");
        for chunk in data.chunks(45) {
            out.push(ch(chunk.len() as u32));
            for g in chunk.chunks(3) {
                let b = |i: usize| u32::from(g.get(i).copied().unwrap_or(0));
                let bits = (b(0) << 16) | (b(1) << 8) | b(2);
                for shift in [18, 12, 6, 0] {
                    out.push(ch((bits >> shift) & 0x3F));
                }
            }
            out.push('\n');
        }
        out.push_str("`\nend\n");
        out
    }

    #[test]
    fn uuencoded_files_are_decoded_exactly_and_cut_from_the_text() {
        let bin: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = format!(
            "Hello,\n\nthe log and the dump:\n\n{}\n{}\nThanks,\nJane",
            encode("server log.txt", b"line one\r\nline two\r\n"),
            encode("core.bin", &bin)
        );
        let (files, rest) = extract(&text, 10);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].name, "server log.txt");
        assert_eq!(files[0].data, b"line one\r\nline two\r\n");
        assert_eq!(crate::digest::sha256_hex(&files[1].data), crate::digest::sha256_hex(&bin));
        assert_eq!(rest.as_deref(), Some("Hello,\n\nthe log and the dump:\n\nThanks,\nJane"));
    }

    #[test]
    fn lines_whose_trailing_blanks_were_trimmed_still_decode() {
        // uuencode writing blanks for zero bits; normalising removed them from line ends.
        let data = [b'A', 0, 0, 0, 0, 0];
        let encoded = encode("z.bin", &data).replace('`', " ");
        let trimmed = super::super::normalise_text(&encoded);
        assert_ne!(trimmed, encoded.trim_end());
        let (files, _) = extract(&trimmed, 10);
        assert_eq!(files[0].data, data);
    }

    #[test]
    fn begin_base64_blocks_are_decoded() {
        let text = "see file\nbegin-base64 600 notes.md\nIyBOb3RlcwpoZWxsbwo=\n====\nbye";
        let (files, rest) = extract(text, 10);
        assert_eq!(files, [UuFile { name: "notes.md".into(), data: b"# Notes\nhello\n".to_vec() }]);
        assert_eq!(rest.as_deref(), Some("see file\nbye"));
    }

    #[test]
    fn prose_that_merely_starts_with_begin_is_left_alone() {
        for text in [
            "begin 644 is how a uuencoded file starts\nbut this is prose\nend",
            "We begin tomorrow.\nbegin 644\nend",
            "begin 999 file.txt\nM86)C\nend",
            "begin 644 cut.txt\n#8V%T",
        ] {
            let (files, rest) = extract(text, 10);
            assert!(files.is_empty() && rest.is_none(), "{text:?}");
        }
    }

    #[test]
    fn many_begin_lines_take_linear_time() {
        // 30,000 `begin` lines, each followed by data, and one `end` at the very bottom: a
        // scanner that looked ahead for `end` from every `begin` would read the text
        // 30,000 times; this one reads it once and finds the last block only.
        let data_line = format!("M{}\n", "86)C".repeat(15));
        let text = format!("{}`\nend\n", format!("begin 644 x\n{data_line}{data_line}").repeat(30_000));
        let started = std::time::Instant::now();
        let (files, rest) = extract(&text, 1000);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].data, b"abc".repeat(30));
        assert_eq!(rest.map(|r| r.lines().count()), Some(3 * 29_999));
        // And many real files stop at the bound.
        let text = encode("f.txt", b"x").repeat(5_000);
        let (files, rest) = extract(&text, 1000);
        assert_eq!(files.len(), 1000);
        assert!(rest.is_some_and(|r| r.starts_with("begin 644 f.txt")));
    }
}
