//! Attachments: every part that is not the readable body, with its exact decoded bytes
//! and a safe display name; attached messages are parsed in turn (bounded depth).

use mail_parser::{Encoding, Message, MessagePart, MimeHeaders, PartType};

use super::{
    content_type_of, convert, one_line, Attachment, Disposition, InboundMail, MAX_ATTACHED_MESSAGE_DEPTH, MAX_PARTS,
};

pub(super) fn collect_attachments(message: &Message<'_>, mail: &mut InboundMail, depth: usize) {
    for (index, &id) in message.attachments.iter().take(MAX_PARTS).enumerate() {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        let content_type = content_type_of(part);
        let mut disposition = match part.content_disposition() {
            Some(d) if d.ctype().eq_ignore_ascii_case("inline") => Disposition::Inline,
            _ => Disposition::Attachment,
        };
        let data: Vec<u8> = match &part.body {
            PartType::Message(nested) => {
                disposition = Disposition::Message;
                if depth < MAX_ATTACHED_MESSAGE_DEPTH {
                    mail.attached_messages.push(convert(nested, depth + 1));
                } else {
                    mail.problems.push("attached messages nested too deeply; inner ones kept as files only".into());
                }
                nested.raw_message().to_vec()
            }
            PartType::Text(_) | PartType::Html(_) => raw_decoded(message, part),
            PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
            PartType::Multipart(_) => continue,
        };
        let content_type = content_type.unwrap_or_else(|| match disposition {
            Disposition::Message => "message/rfc822".into(),
            _ if matches!(part.body, PartType::Text(_)) => "text/plain".into(),
            _ if matches!(part.body, PartType::Html(_)) => "text/html".into(),
            _ => "application/octet-stream".into(),
        });
        let raw_name = super::charset::file_name(message, part).or_else(|| match &part.body {
            PartType::Message(nested) => super::subject_of(nested).map(|s| format!("{s}.eml")),
            _ => None,
        });
        // mail-parser decodes RFC 2231 continuations piece by piece, which garbles a
        // multi-byte character split across pieces; reassemble those names from the raw header.
        let raw_name = continued_filename(message, part).or(raw_name);
        let filename = safe_filename(raw_name.as_deref(), &content_type, index + 1);
        mail.attachments.push(Attachment {
            filename,
            content_type,
            disposition,
            content_id: part.content_id().map(|s| s.trim_matches(['<', '>']).to_string()),
            sha256: crate::store::blobs::sha256_hex(&data),
            data,
        });
    }
}

/// The file name of a part whose `filename*N*`/`name*N*` parameters (RFC 2231 section 3/4)
/// are split over several pieces: the pieces' bytes are joined first, then decoded with the
/// charset named in the first piece. `None` when the part has no such continuation.
fn continued_filename(message: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    let raw = message.raw_message();
    for header in &part.headers {
        let name = header.name.as_str();
        let param = if name.eq_ignore_ascii_case("content-disposition") {
            "filename"
        } else if name.eq_ignore_ascii_case("content-type") {
            "name"
        } else {
            continue;
        };
        let value = raw.get(header.offset_start as usize..header.offset_end as usize)?;
        if let Some(name) = join_rfc2231_pieces(&String::from_utf8_lossy(value), param) {
            return Some(name);
        }
    }
    None
}

fn join_rfc2231_pieces(value: &str, param: &str) -> Option<String> {
    let mut pieces: Vec<(u32, bool, String)> = Vec::new();
    for item in split_params(value) {
        let Some((key, val)) = item.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let Some(rest) = key.strip_prefix(param).and_then(|r| r.strip_prefix('*')) else {
            continue;
        };
        let (number, encoded) = match rest.strip_suffix('*') {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        pieces.push((number, encoded, val.trim().trim_matches('"').to_string()));
    }
    if pieces.len() < 2 {
        return None;
    }
    pieces.sort_by_key(|p| p.0);
    let mut charset = String::from("us-ascii");
    let mut bytes = Vec::new();
    for (i, (_, encoded, val)) in pieces.iter().enumerate() {
        let mut val = val.as_str();
        if i == 0 && *encoded {
            // charset'language'value
            let mut parts = val.splitn(3, '\'');
            if let (Some(cs), Some(_lang), Some(v)) = (parts.next(), parts.next(), parts.next()) {
                charset = cs.to_string();
                val = v;
            }
        }
        if *encoded {
            bytes.extend(percent_decode(val));
        } else {
            bytes.extend_from_slice(val.as_bytes());
        }
    }
    let decode = mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes());
    Some(match decode {
        Some(f) => f(&bytes),
        None => String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Splits `a=1; b="x;y"; c=2` at semicolons outside quotes.
fn split_params(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            // Byte-wise: the text may hold non-ASCII right after a '%'.
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A text part's bytes with only the transfer encoding removed, so that a text file
/// attachment is stored exactly as the sender's program wrote it (same checksum).
fn raw_decoded(message: &Message<'_>, part: &MessagePart<'_>) -> Vec<u8> {
    let raw = message.raw_message();
    let (start, end) = (part.offset_body as usize, part.offset_end as usize);
    let Some(body) = raw.get(start..end.min(raw.len())) else {
        return part.contents().to_vec();
    };
    let decoded = match part.encoding {
        Encoding::Base64 => mail_parser::decoders::base64::base64_decode(body),
        Encoding::QuotedPrintable => mail_parser::decoders::quoted_printable::quoted_printable_decode(body),
        Encoding::None => Some(body.to_vec()),
    };
    decoded.unwrap_or_else(|| part.contents().to_vec())
}

/// Longest stored file name, in bytes.
const MAX_FILENAME: usize = 200;

/// A file name safe to show and to offer for download: the last path component only, no
/// control or bidirectional-override characters, not hidden, bounded; unnamed parts get
/// `part-N` with an extension from the content type.
pub fn safe_filename(raw: Option<&str>, content_type: &str, index: usize) -> String {
    let is_bidi = |c: char| matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let cleaned: String = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !is_bidi(*c))
        .collect();
    let cleaned = one_line(&cleaned);
    let cleaned = cleaned.trim_start_matches(['.', ' ']).trim_end_matches(['.', ' ']);
    if cleaned.is_empty() {
        return format!("part-{index}{}", extension_for(content_type));
    }
    if cleaned.len() <= MAX_FILENAME {
        return cleaned.to_string();
    }
    // Keep the extension: "very long name….pdf".
    let (stem, ext) = match cleaned.rsplit_once('.') {
        Some((s, e)) if e.len() <= 10 && !s.is_empty() => (s, format!(".{e}")),
        _ => (cleaned, String::new()),
    };
    let mut cut = MAX_FILENAME - ext.len() - '…'.len_utf8();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…{ext}", &stem[..cut])
}

fn extension_for(content_type: &str) -> &'static str {
    match content_type {
        "text/plain" => ".txt",
        "text/html" => ".html",
        "message/rfc822" => ".eml",
        "image/png" => ".png",
        "image/jpeg" => ".jpg",
        "image/gif" => ".gif",
        "application/pdf" => ".pdf",
        _ => ".bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn parse_str(s: &str) -> InboundMail {
        parse(s.as_bytes()).expect("parses")
    }

    #[test]
    fn attachment_names_are_decoded_and_made_safe() {
        let m = parse_str(concat!(
            "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n",
            "--XX\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
            "--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpass%C3%A9.pdf\r\n",
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n",
            "--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"evil\u{202E}fdp.exe\"\r\n\r\nMZ\r\n",
            "--XX\r\nContent-Type: image/png\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n",
            "--XX--\r\n"
        ));
        let names: Vec<&str> = m.attachments.iter().map(|a| a.filename.as_str()).collect();
        assert_eq!(names, ["passé.pdf", "evilfdp.exe", "part-3.png"]);
        assert_eq!(m.attachments[0].data, b"%PDF-");
        assert_eq!(m.attachments[0].content_type, "application/pdf");
        assert_eq!(m.text, "body");
    }

    #[test]
    fn split_rfc2231_names_are_joined_before_decoding() {
        // "Отчёт об ошибке (полный).docx" split in the middle of "ы" (D1 8B).
        let m = parse_str(concat!(
            "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n",
            "--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n",
            "\tfilename*0*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82%20%D0%BE;\r\n\tfilename*1*=%D0%B1%20%D0%BE%D1%88%D0%B8%D0%B1%D0%BA;\r\n",
            "\tfilename*2*=%D0%B5%20%28%D0%BF%D0%BE%D0%BB%D0%BD%D1;\r\n\tfilename*3*=%8B%D0%B9%29.docx\r\n\r\ndata\r\n--B--\r\n"
        ));
        assert_eq!(m.attachments[0].filename, "Отчёт об ошибке (полный).docx");
        let m = parse_str(concat!(
            "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n",
            "--B\r\nContent-Type: application/pdf; name*0*=iso-8859-1''Gr%FC; name*1=\"n.pdf\"\r\n\r\ndata\r\n--B--\r\n"
        ));
        assert_eq!(m.attachments[0].filename, "Grün.pdf");
        assert_eq!(percent_decode("%é%4"), "%é%4".as_bytes());
    }

    #[test]
    fn safe_filename_keeps_extension_when_truncating() {
        let long = format!("{}.pdf", "ä".repeat(300));
        let name = safe_filename(Some(&long), "application/pdf", 1);
        assert!(name.len() <= MAX_FILENAME && name.ends_with("….pdf"), "{name}");
        assert_eq!(safe_filename(Some("..."), "text/plain", 2), "part-2.txt");
        assert_eq!(safe_filename(Some(".htaccess"), "text/plain", 2), "htaccess");
    }

    #[test]
    fn attached_message_is_parsed_and_kept_as_eml() {
        let m = parse_str(concat!(
            "From: admin@example.com\r\nSubject: Fwd: printer\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n",
            "--B\r\nContent-Type: text/plain\r\n\r\nsee below\r\n",
            "--B\r\nContent-Type: message/rfc822\r\n\r\n",
            "From: Cust <cust@customer.example>\r\nSubject: Printer on fire\r\nCc: boss@customer.example\r\n\r\nIt burns.\r\n",
            "--B--\r\n"
        ));
        assert_eq!(m.attached_messages.len(), 1);
        let inner = &m.attached_messages[0];
        assert_eq!(inner.from_address().unwrap().as_str(), "cust@customer.example");
        assert_eq!(inner.subject, "Printer on fire");
        assert_eq!(inner.text, "It burns.");
        assert_eq!(m.attachments[0].disposition, Disposition::Message);
        assert_eq!(m.attachments[0].filename, "Printer on fire.eml");
    }
}
