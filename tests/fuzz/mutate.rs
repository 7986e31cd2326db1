//! Mutations that break mail parsers: small damage anywhere (bit flips, truncation, NUL
//! bytes, spliced mails) and the structures hostile or broken mail is made of (huge and
//! countless headers, deep and wide MIME trees, broken boundaries and transfer encodings,
//! encoded-word and RFC 2231 floods, nested attached messages, uuencode and TNEF garbage,
//! quote and forward pyramids). Everything is drawn from one seeded generator, so a seed
//! repeats the same inputs in the same order.

/// splitmix64: small, fast, and the same sequence for a seed on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// Mutations that repeat a part stop once the mail is this large (an input is then at most
/// this plus one part): larger mails only repeat what these already test.
const MAX_GROWN: usize = 8 * 1024 * 1024;

/// A mutated mail and the names of the mutations that made it, for people.
pub struct Mutant {
    pub bytes: Vec<u8>,
    pub how: Vec<&'static str>,
}

type Mutation = fn(&mut Rng, Vec<u8>, &[Vec<u8>]) -> Vec<u8>;

/// Every mutation, by name. Small damage comes up more often than the expensive floods.
const MUTATIONS: &[(&str, usize, Mutation)] = &[
    ("flip-bits", 8, flip_bits),
    ("random-bytes", 6, random_bytes),
    ("truncate", 6, truncate),
    ("delete-range", 4, delete_range),
    ("duplicate-range", 4, duplicate_range),
    ("splice", 4, splice),
    ("nul-bytes", 3, nul_bytes),
    ("line-endings", 3, line_endings),
    ("huge-header-line", 1, huge_header_line),
    ("many-headers", 1, many_headers),
    ("folded-header", 1, folded_header),
    ("many-addresses", 1, many_addresses),
    ("many-references", 1, many_references),
    ("encoded-word-bomb", 2, encoded_word_bomb),
    ("rfc2231-flood", 2, rfc2231_flood),
    ("deep-multipart", 1, deep_multipart),
    ("deep-rfc822", 1, deep_rfc822),
    ("duplicate-parts", 2, duplicate_parts),
    ("many-parts", 1, many_parts),
    ("broken-boundaries", 4, broken_boundaries),
    ("broken-transfer-encoding", 4, broken_transfer_encoding),
    ("overlong-line", 1, overlong_line),
    ("html-bomb", 1, html_bomb),
    ("uuencode-garbage", 2, uuencode_garbage),
    ("tnef-garbage", 2, tnef_garbage),
    ("case-tokens", 3, case_tokens),
    ("command-flood", 2, command_flood),
    ("quote-pyramid", 1, quote_pyramid),
    ("forward-chain", 1, forward_chain),
    ("odd-charsets", 3, odd_charsets),
    ("header-garbage", 3, header_garbage),
];

/// One to three mutations of `seed`; `others` may be spliced in.
pub fn mutate(rng: &mut Rng, seed: &[u8], others: &[Vec<u8>]) -> Mutant {
    let total: usize = MUTATIONS.iter().map(|(_, weight, _)| weight).sum();
    let mut bytes = seed.to_vec();
    let mut how = Vec::new();
    for _ in 0..rng.between(1, 3) {
        let mut at = rng.below(total);
        for (name, weight, mutation) in MUTATIONS {
            if at < *weight {
                bytes = mutation(rng, bytes, others);
                how.push(*name);
                break;
            }
            at -= weight;
        }
        // The floods make inputs of megabytes; stacking more on them only repeats them.
        if bytes.len() > 512 * 1024 {
            break;
        }
    }
    Mutant { bytes, how }
}

/// Where the header ends and the body begins (after the blank line), or the end.
fn body_start(mail: &[u8]) -> usize {
    let crlf = find(mail, b"\r\n\r\n").map(|i| i + 4);
    let lf = find(mail, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(mail.len()),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The mail with `header` (lines ending in CRLF) put first.
fn with_header_first(header: &[u8], mail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + mail.len());
    out.extend_from_slice(header);
    out.extend_from_slice(mail);
    out
}

/// The mail's header with `header` added at its end, then the body.
fn with_header_last(header: &[u8], mail: &[u8]) -> Vec<u8> {
    let at = body_start(mail);
    let split = if at >= 2 && mail[..at].ends_with(b"\r\n\r\n") {
        at - 2
    } else if at >= 1 && mail[..at].ends_with(b"\n\n") {
        at - 1
    } else {
        at
    };
    let mut out = mail[..split].to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(header);
    out.extend_from_slice(&mail[split..]);
    out
}

/// A plain mail around `content_type` and `body`, from a customer to the support address.
fn mail_with(content_type: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "From: Alice <alice@customer.example>\r\nTo: support@example.com\r\nSubject: fuzz\r\n\
         Message-ID: <fuzz@customer.example>\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n{extra_headers}\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn letters(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| (b'a' + rng.below(26) as u8) as char).collect()
}

fn flip_bits(rng: &mut Rng, mut mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    if mail.is_empty() {
        return mail;
    }
    for _ in 0..rng.between(1, 16) {
        let at = rng.below(mail.len());
        mail[at] ^= 1 << rng.below(8);
    }
    mail
}

fn random_bytes(rng: &mut Rng, mut mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    for _ in 0..rng.between(1, 8) {
        let at = rng.below(mail.len() + 1);
        let n = rng.between(1, 64);
        let chunk: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
        if rng.chance(2) && at + n <= mail.len() {
            mail[at..at + n].copy_from_slice(&chunk);
        } else {
            mail.splice(at..at, chunk);
        }
    }
    mail
}

fn truncate(rng: &mut Rng, mut mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    // Often inside the header or at a boundary line: where parsers look ahead.
    let at = match rng.below(3) {
        0 => rng.below(body_start(&mail) + 1),
        1 => find(&mail, b"\n--").map_or(mail.len(), |i| (i + rng.between(1, 8)).min(mail.len())),
        _ => rng.below(mail.len() + 1),
    };
    mail.truncate(at);
    mail
}

fn delete_range(rng: &mut Rng, mut mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    if mail.is_empty() {
        return mail;
    }
    let from = rng.below(mail.len());
    let to = (from + rng.between(1, 4096)).min(mail.len());
    mail.drain(from..to);
    mail
}

fn duplicate_range(rng: &mut Rng, mut mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    if mail.is_empty() {
        return mail;
    }
    let from = rng.below(mail.len());
    let to = (from + rng.between(1, 2048)).min(mail.len());
    let chunk = mail[from..to].to_vec();
    let times = rng.between(1, 64);
    let at = rng.below(mail.len() + 1);
    mail.splice(at..at, chunk.repeat(times));
    mail
}

fn splice(rng: &mut Rng, mail: Vec<u8>, others: &[Vec<u8>]) -> Vec<u8> {
    let other = rng.pick(others);
    let cut = rng.below(mail.len() + 1);
    let from = rng.below(other.len() + 1);
    let mut out = mail[..cut].to_vec();
    out.extend_from_slice(&other[from..]);
    out
}

fn nul_bytes(rng: &mut Rng, mut mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let head = body_start(&mail);
    for _ in 0..rng.between(1, 32) {
        // Half of them in the header, where a C-minded parser stops.
        let at = if rng.chance(2) { rng.below(head + 1) } else { rng.below(mail.len() + 1) };
        mail.insert(at.min(mail.len()), 0);
    }
    mail
}

fn line_endings(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let lf_only: Vec<u8> = mail.iter().copied().filter(|&b| b != b'\r').collect();
    match rng.below(4) {
        0 => lf_only,
        1 => lf_only.iter().map(|&b| if b == b'\n' { b'\r' } else { b }).collect(),
        2 => lf_only.iter().flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] }).collect(),
        // Mixed, line by line.
        _ => {
            let mut out = Vec::with_capacity(mail.len() * 2);
            for &b in &lf_only {
                if b == b'\n' {
                    match rng.below(3) {
                        0 => out.extend_from_slice(b"\r\n"),
                        1 => out.push(b'\n'),
                        _ => out.push(b'\r'),
                    }
                } else {
                    out.push(b);
                }
            }
            out
        }
    }
}

fn huge_header_line(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let name = *rng.pick(&["X-Huge", "Subject", "From", "To", "References", "Content-Type", "Received"]);
    let n = rng.between(64 * 1024, 1024 * 1024);
    let value = match name {
        "From" | "To" => format!("{}@customer.example", letters(rng, n)),
        "Content-Type" => format!("text/plain; charset=\"{}\"", letters(rng, n)),
        "References" => format!("<{}@example>", letters(rng, n)),
        _ => letters(rng, n),
    };
    let header = format!("{name}: {value}\r\n").into_bytes();
    if rng.chance(2) {
        with_header_first(&header, &mail)
    } else {
        with_header_last(&header, &mail)
    }
}

fn many_headers(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let n = rng.between(1_000, 10_000);
    let name = *rng.pick(&["X-Many", "Received", "Subject", "Message-ID", "Content-Type", "Auto-Submitted"]);
    let mut header = String::with_capacity(n * 40);
    for i in 0..n {
        match name {
            "Received" => header.push_str(&format!("Received: from h{i}.example by mx.example.com; {i}\r\n")),
            "Message-ID" => header.push_str(&format!("Message-ID: <m{i}@customer.example>\r\n")),
            "Content-Type" => header.push_str(&format!("Content-Type: multipart/mixed; boundary=b{i}\r\n")),
            _ => header.push_str(&format!("{name}: value {i}\r\n")),
        }
    }
    with_header_last(header.as_bytes(), &mail)
}

fn folded_header(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let name = *rng.pick(&["Subject", "To", "Content-Type", "X-Folded"]);
    let n = rng.between(1_000, 10_000);
    let mut header = format!("{name}: start");
    for i in 0..n {
        match name {
            "To" => header.push_str(&format!("\r\n u{i}@customer.example,")),
            "Content-Type" => header.push_str(&format!("\r\n\tp{i}=v{i};")),
            _ => header.push_str(&format!("\r\n w{i}")),
        }
    }
    header.push_str("\r\n");
    with_header_last(header.as_bytes(), &mail)
}

fn many_addresses(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let name = *rng.pick(&["To", "Cc", "From", "Reply-To"]);
    let n = rng.between(1_000, 10_000);
    let mut value = String::with_capacity(n * 30);
    for i in 0..n {
        if i > 0 {
            value.push_str(", ");
        }
        match rng.below(4) {
            0 => value.push_str(&format!("u{i}@customer.example")),
            1 => value.push_str(&format!("\"=?utf-8?B?w6TDtg==?= {i}\" <u{i}@acme.example>")),
            2 => value.push_str(&format!("group{i}: g{i}@other.example;")),
            _ => value.push_str(&format!("<broken{i}@")),
        }
    }
    with_header_last(format!("{name}: {value}\r\n").as_bytes(), &mail)
}

fn many_references(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let n = rng.between(1_000, 10_000);
    let mut value = String::with_capacity(n * 30);
    for i in 0..n {
        // Now and then one that exists, so routing has something to find.
        if rng.chance(500) {
            value.push_str(" <seed-1@customer.example>");
        } else {
            value.push_str(&format!(" <r{i}.{}@customer.example>", rng.below(1000)));
        }
    }
    let name = *rng.pick(&["References", "In-Reply-To"]);
    with_header_last(format!("{name}:{value}\r\n").as_bytes(), &mail)
}

fn encoded_word_bomb(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let name = *rng.pick(&["Subject", "From", "To", "Content-Disposition"]);
    let n = rng.between(1_000, 20_000);
    let mut value = String::with_capacity(n * 24);
    if name == "Content-Disposition" {
        value.push_str("attachment; filename=\"");
    }
    for _ in 0..n {
        let word = match rng.below(8) {
            0 => "=?utf-8?B?w6TDtsO8?=",
            1 => "=?iso-8859-1?Q?=E4=F6=FC?=",
            2 => "=?x-unknown?Q?abc?=",
            3 => "=?utf-8?B?=?=",
            4 => "=?utf-8?Q?=?=",
            5 => "=?utf-7?B?K0FPUS0=?=",
            6 => "=?iso-2022-jp?B?GyRCJUYlOSVIGyhC?=",
            _ => "=?utf-8*en?Q?=ZZ=?=",
        };
        value.push_str(word);
        if rng.chance(2) {
            value.push(' ');
        }
    }
    if name == "Content-Disposition" {
        value.push('"');
    }
    let body = mail_body_or_plain(&mail);
    let header = format!("{name}: {value}\r\n");
    if name == "Content-Disposition" {
        mail_with("application/octet-stream", &header, &body)
    } else {
        with_header_first(header.as_bytes(), &mail)
    }
}

fn mail_body_or_plain(mail: &[u8]) -> Vec<u8> {
    let body = &mail[body_start(mail)..];
    if body.is_empty() {
        b"hello\r\n".to_vec()
    } else {
        body.to_vec()
    }
}

fn rfc2231_flood(rng: &mut Rng, _mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let n = rng.between(100, 10_000);
    let param = *rng.pick(&["filename", "name", "boundary", "charset"]);
    let mut indices: Vec<usize> = (0..n).collect();
    // Out of order, with gaps and with absurd indices, as a hostile sender would.
    for i in (1..indices.len()).rev() {
        if rng.chance(3) {
            let j = rng.below(i + 1);
            indices.swap(i, j);
        }
    }
    let mut value = String::new();
    for (k, i) in indices.into_iter().enumerate() {
        let index = if rng.chance(50) { usize::MAX - rng.below(10) } else { i };
        if k == 0 || rng.chance(20) {
            value.push_str(&format!(";\r\n {param}*{index}*=utf-8'en'%E4%F6{}", letters(rng, 4)));
        } else {
            value.push_str(&format!(";\r\n {param}*{index}=\"{}\"", letters(rng, 8)));
        }
    }
    let header = format!("Content-Disposition: attachment{value}\r\n");
    mail_with(&format!("application/octet-stream; name*0=a{value}"), &header, b"AAAA\r\n")
}

fn deep_multipart(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let levels = *rng.pick(&[50, 200, 1_000, 5_000]);
    let same_boundary = rng.chance(4);
    let inner = mail_body_or_plain(&mail);
    let mut body = Vec::with_capacity(levels * 80 + inner.len());
    for i in 0..levels {
        let b = if same_boundary { "b".to_string() } else { format!("b{i}") };
        body.extend_from_slice(
            format!("--{b}\r\nContent-Type: multipart/mixed; boundary=\"b{}\"\r\n\r\n", i + 1).as_bytes(),
        );
    }
    body.extend_from_slice(format!("--b{levels}\r\nContent-Type: text/plain\r\n\r\n").as_bytes());
    body.extend_from_slice(&inner);
    if rng.chance(2) {
        for i in (0..=levels).rev() {
            body.extend_from_slice(format!("\r\n--b{i}--\r\n").as_bytes());
        }
    }
    mail_with("multipart/mixed; boundary=\"b0\"", "", &body)
}

fn deep_rfc822(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let levels = *rng.pick(&[10, 100, 1_000, 3_000]);
    let mut out = mail;
    for i in 0..levels {
        out = if rng.chance(2) {
            // As an attachment in a multipart.
            let mut body = format!(
                "--f{i}\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n--f{i}\r\n\
                 Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(&out);
            body.extend_from_slice(format!("\r\n--f{i}--\r\n").as_bytes());
            mail_with(&format!("multipart/mixed; boundary=\"f{i}\""), "", &body)
        } else {
            mail_with("message/rfc822", "", &out)
        };
    }
    out
}

/// The boundary a multipart mail declares, if it has one.
pub fn boundary_of(mail: &[u8]) -> Option<Vec<u8>> {
    let head = &mail[..body_start(mail)];
    let at = find(&head.to_ascii_lowercase(), b"boundary=")? + "boundary=".len();
    let rest = &head[at..];
    let value: Vec<u8> = if rest.first() == Some(&b'"') {
        rest[1..].iter().copied().take_while(|&b| b != b'"').collect()
    } else {
        rest.iter().copied().take_while(|&b| !b" ;\r\n\t".contains(&b)).collect()
    };
    (!value.is_empty()).then_some(value)
}

fn duplicate_parts(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let times = *rng.pick(&[10, 100, 1_000, 5_000]);
    let Some(boundary) = boundary_of(&mail) else {
        // Not multipart: make one whose part is the whole mail, attached.
        let mut body = b"--d\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
        body.extend_from_slice(&mail);
        body.extend_from_slice(b"\r\n");
        let part = body.clone();
        for _ in 1..times.min(200) {
            if body.len() > MAX_GROWN {
                break;
            }
            body.extend_from_slice(&part);
        }
        body.extend_from_slice(b"--d--\r\n");
        return mail_with("multipart/mixed; boundary=d", "", &body);
    };
    repeat_first_part(mail, &boundary, times)
}

/// `mail` with the first part of its multipart (`boundary`) repeated `times` more times
/// after it (while the mail stays under `MAX_GROWN`).
pub fn repeat_first_part(mail: Vec<u8>, boundary: &[u8], times: usize) -> Vec<u8> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let Some(first) = find(&mail, &delimiter) else { return mail };
    let after = first + delimiter.len();
    let Some(next) = find(&mail[after..], &delimiter).map(|i| after + i) else { return mail };
    let part = mail[first..next].to_vec();
    let mut out = mail[..next].to_vec();
    for _ in 0..times {
        out.extend_from_slice(&part);
        if out.len() > MAX_GROWN {
            break;
        }
    }
    out.extend_from_slice(&mail[next..]);
    out
}

fn many_parts(rng: &mut Rng, _mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let n = rng.between(1_000, 20_000);
    let mut body = Vec::with_capacity(n * 120);
    for i in 0..n {
        body.extend_from_slice(b"--p\r\n");
        match rng.below(4) {
            0 => body.extend_from_slice(format!("Content-Type: text/plain\r\n\r\nline {i}\r\n").as_bytes()),
            1 => body.extend_from_slice(
                format!(
                    "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; \
                     filename=\"../../etc/f{i}.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n"
                )
                .as_bytes(),
            ),
            2 => body.extend_from_slice(
                format!("Content-Type: image/png; name=\"i{i}.png\"\r\nContent-ID: <i{i}>\r\n\r\n\u{89}PNG\r\n")
                    .as_bytes(),
            ),
            _ => body.extend_from_slice(b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n"),
        }
    }
    body.extend_from_slice(b"--p--\r\n");
    mail_with("multipart/mixed; boundary=p", "", &body)
}

fn broken_boundaries(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let boundary = boundary_of(&mail).unwrap_or_else(|| b"zz".to_vec());
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(&boundary);
    let mail = if boundary_of(&mail).is_none() {
        let mut body = b"--zz\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        body.extend_from_slice(&mail_body_or_plain(&mail));
        body.extend_from_slice(b"\r\n--zz\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\n%PDF-1.4\r\n--zz--\r\n");
        mail_with("multipart/mixed; boundary=zz", "", &body)
    } else {
        mail
    };
    let replace_all = |mail: &[u8], with: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(mail.len());
        let mut i = 0;
        while i < mail.len() {
            if mail[i..].starts_with(&delimiter) {
                out.extend_from_slice(with);
                i += delimiter.len();
            } else {
                out.push(mail[i]);
                i += 1;
            }
        }
        out
    };
    match rng.below(7) {
        // No closing delimiter.
        0 => {
            let mut closing = delimiter.clone();
            closing.extend_from_slice(b"--");
            match find(&mail, &closing) {
                Some(at) => mail[..at].to_vec(),
                None => mail,
            }
        }
        // No delimiters at all.
        1 => replace_all(&mail, b""),
        // Delimiters that almost match.
        2 => {
            let mut near = delimiter.clone();
            near.pop();
            replace_all(&mail, &near)
        }
        // An empty boundary parameter.
        3 => replace_all(&mail, b"--"),
        // Delimiters without the line break before them.
        4 => {
            let mut glued = Vec::with_capacity(mail.len());
            let mut i = 0;
            while i < mail.len() {
                if mail[i..].starts_with(b"\r\n--") {
                    i += 2;
                } else {
                    glued.push(mail[i]);
                    i += 1;
                }
            }
            glued
        }
        // The boundary declared twice, differently.
        5 => with_header_last(b"Content-Type: multipart/alternative; boundary=\"other\"; boundary=\"\"\r\n", &mail),
        // A boundary of 10,000 characters, and parts that use it.
        _ => {
            let long = "x".repeat(10_000);
            let mut body = format!("--{long}\r\nContent-Type: text/plain\r\n\r\nhi\r\n--{long}--\r\n").into_bytes();
            body.extend_from_slice(&mail_body_or_plain(&mail));
            mail_with(&format!("multipart/mixed; boundary=\"{long}\""), "", &body)
        }
    }
}

fn broken_transfer_encoding(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let n = rng.between(16, 64 * 1024);
    let (encoding, body): (&str, Vec<u8>) = match rng.below(6) {
        0 => ("base64", (0..n).map(|_| *rng.pick(b"AZaz09+/=\r\n!*-")).collect()),
        1 => ("base64", b"====\r\n".repeat(n / 6 + 1)),
        2 => ("quoted-printable", (0..n).map(|_| *rng.pick(b"=AZ09\r\n \t")).collect()),
        3 => ("quoted-printable", b"=\r\n".repeat(n / 3 + 1)),
        4 => ("x-uuencode", (0..n).map(|_| rng.byte()).collect()),
        _ => ("8bit", (0..n).map(|_| rng.byte()).collect()),
    };
    let content_type = *rng.pick(&["text/plain; charset=utf-8", "text/html", "application/octet-stream; name=x.bin"]);
    if rng.chance(2) {
        mail_with(content_type, &format!("Content-Transfer-Encoding: {encoding}\r\n"), &body)
    } else {
        // The same as a part beside the original text.
        let mut multipart = b"--t\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        multipart.extend_from_slice(&mail_body_or_plain(&mail));
        multipart.extend_from_slice(
            format!("\r\n--t\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n")
                .as_bytes(),
        );
        multipart.extend_from_slice(&body);
        multipart.extend_from_slice(b"\r\n--t--\r\n");
        mail_with("multipart/mixed; boundary=t", "", &multipart)
    }
}

fn overlong_line(rng: &mut Rng, mut mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let n = rng.between(256 * 1024, 2 * 1024 * 1024);
    let fill = *rng.pick(b"a >=-");
    let at = body_start(&mail) + rng.below(mail.len() - body_start(&mail) + 1);
    mail.splice(at..at, std::iter::repeat_n(fill, n));
    mail
}

fn html_bomb(rng: &mut Rng, _mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let n = *rng.pick(&[1_000, 10_000, 50_000]);
    let body = match rng.below(5) {
        0 => format!("<html><body>{}x{}</body></html>", "<div>".repeat(n), "</div>".repeat(n)),
        1 => format!("<table>{}</table>", "<tr><td><table><tr><td>".repeat(n / 4)),
        2 => format!("<ul>{}</ul>", "<li><ul>".repeat(n)),
        3 => format!("<p>{}</p>", "&amp;&#x1F600;&nosuch;&#99999999;".repeat(n)),
        _ => format!("<blockquote>{}</blockquote>", "<blockquote>> ".repeat(n)),
    };
    mail_with("text/html; charset=utf-8", "", body.as_bytes())
}

fn uuencode_garbage(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let mut body = mail_body_or_plain(&mail);
    body.extend_from_slice(b"\r\nbegin 644 report.bin\r\n");
    for _ in 0..rng.between(1, 2_000) {
        let len = rng.between(0, 80);
        let line: Vec<u8> = (0..len).map(|_| b' ' + rng.below(64) as u8).collect();
        body.extend_from_slice(&line);
        body.extend_from_slice(b"\r\n");
    }
    if rng.chance(2) {
        body.extend_from_slice(b"`\r\nend\r\n");
    }
    mail_with("text/plain", "", &body)
}

fn tnef_garbage(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let mut tnef = vec![0x78, 0x9f, 0x3e, 0x22];
    tnef.extend((0..rng.between(0, 64 * 1024)).map(|_| rng.byte()));
    let encoded = base64_lines(&tnef);
    let mut body = b"--w\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    body.extend_from_slice(&mail_body_or_plain(&mail));
    body.extend_from_slice(
        b"\r\n--w\r\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\r\n\
          Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"winmail.dat\"\r\n\r\n",
    );
    body.extend_from_slice(&encoded);
    body.extend_from_slice(b"\r\n--w--\r\n");
    mail_with("multipart/mixed; boundary=w", "", &body)
}

fn base64_lines(data: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(text.len() + text.len() / 38);
    for chunk in text.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn case_tokens(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let subject = match rng.below(6) {
        0 => "Re: [CASE-99999999999999999999999] overflow".to_string(),
        1 => "[CASE-1] ".repeat(rng.between(100, 5_000)),
        2 => format!("{}[CASE-2] prefixes", "Re: AW: SV: Fwd: ".repeat(rng.between(100, 5_000))),
        3 => "[CASE-0] [CASE--1] [CASE-] [case-3] [CASE-9223372036854775807]".to_string(),
        4 => format!("[CASE-{}]", "1".repeat(rng.between(20, 10_000))),
        _ => "Re: [CASE-3] closed case #accept #reject #close #watch".to_string(),
    };
    let header = format!("Subject: {subject}\r\n");
    // The first Subject wins in most parsers; sometimes add it after the original.
    if rng.chance(2) {
        with_header_first(header.as_bytes(), &mail)
    } else {
        with_header_last(header.as_bytes(), &mail)
    }
}

fn command_flood(rng: &mut Rng, _mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let n = rng.between(100, 10_000);
    let mut body = String::with_capacity(n * 30);
    for i in 0..n {
        match rng.below(6) {
            0 => body.push_str(&format!("#watch w{i}@customer.example w{i}@acme.example\r\n")),
            1 => body.push_str(&format!("#unwatch u{i}@customer.example\r\n")),
            2 => body.push_str("#impact high\r\n"),
            3 => body.push_str(&format!("#reject {}\r\n", "because ".repeat(rng.between(1, 100)))),
            4 => body.push_str(&format!("Contact: c{i}@customer.example\r\nAccount: ACME\r\n")),
            _ => body.push_str("#close #accept #resolve #note #open\r\n"),
        }
    }
    let from =
        *rng.pick(&["alice@customer.example", "ann@support.example.com", "admin@example.com", "x@other.example"]);
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: Re: [CASE-{}] commands\r\n\
         In-Reply-To: <seed-1@customer.example>\r\nMessage-ID: <cmd@customer.example>\r\n\r\n{body}",
        rng.between(1, 4)
    )
    .into_bytes()
}

fn quote_pyramid(rng: &mut Rng, _mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let depth = *rng.pick(&[100, 1_000, 10_000]);
    let mut body = String::from("New text on top.\r\n\r\nOn Mon, 2 Nov 2026, Alice wrote:\r\n");
    for i in 0..depth {
        body.push_str(&">".repeat(i.min(5_000)));
        body.push_str(" quoted line\r\n");
        if rng.chance(50) {
            body.push_str("-- \r\nSignature\r\n");
        }
    }
    format!(
        "From: alice@customer.example\r\nTo: support@example.com\r\nSubject: Re: [CASE-1] VPN\r\n\
         In-Reply-To: <seed-1@customer.example>\r\n\r\n{body}"
    )
    .into_bytes()
}

fn forward_chain(rng: &mut Rng, _mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let n = rng.between(100, 5_000);
    let mut body = String::from("Please open a case for this customer.\r\n\r\n");
    for i in 0..n {
        match rng.below(4) {
            0 => body.push_str("---------- Forwarded message ---------\r\n"),
            1 => body.push_str("-----Original Message-----\r\n"),
            2 => body.push_str("Begin forwarded message:\r\n\r\n"),
            _ => body.push_str("-------- Forwarded Message --------\r\n"),
        }
        body.push_str(&format!(
            "From: Person {i} <p{i}@customer.example>\r\nSent: Monday\r\nTo: support@example.com\r\nSubject: fw {i}\r\n\r\ntext {i}\r\n\r\n"
        ));
    }
    format!(
        "From: ann@support.example.com\r\nTo: support@example.com\r\nSubject: Fwd: trouble\r\n\
         Authentication-Results: mx.example.com; dmarc=pass header.from=support.example.com\r\n\r\n{body}"
    )
    .into_bytes()
}

fn odd_charsets(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let charset = *rng.pick(&[
        "utf-7",
        "utf-16",
        "utf-16le",
        "utf-32",
        "iso-2022-jp",
        "gb18030",
        "x-unknown",
        "",
        "\"\"",
        "koi8-r",
        "windows-1252",
        "big5",
        "shift_jis",
        "euc-kr",
        "utf-8\u{0}",
    ]);
    let n = rng.between(0, 16 * 1024);
    let mut body: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
    if rng.chance(2) {
        body.splice(0..0, mail_body_or_plain(&mail));
    }
    let content_type = if rng.chance(2) { "text/plain" } else { "text/html" };
    mail_with(&format!("{content_type}; charset={charset}"), "", &body)
}

fn header_garbage(rng: &mut Rng, mail: Vec<u8>, _: &[Vec<u8>]) -> Vec<u8> {
    let line: &[u8] = match rng.below(8) {
        0 => b"No colon here at all\r\n",
        1 => b": empty name\r\n",
        2 => b"Subject\xff\xfe: eight-bit name\r\n",
        3 => b" continuation first\r\n",
        4 => b"From: <>\r\n",
        5 => b"Date: Thu, 31 Feb 99999 25:61:61 +9999\r\n",
        6 => b"Message-ID: <>\r\nMessage-ID: <<a@b>>\r\n",
        _ => b"Content-Type: multipart/\r\n",
    };
    if rng.chance(2) {
        with_header_first(line, &mail)
    } else {
        with_header_last(line, &mail)
    }
}
