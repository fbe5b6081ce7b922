//! Account SSH keys (reference §7.3): parsing OpenSSH and PEM public keys, the
//! SHA-256 fingerprint upstream stores (base64 of the OpenSSH wire blob, unpadded)
//! and the PKCS#8 PEM re-encoding upstream returns.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::Digest;

#[derive(Debug, PartialEq)]
pub enum KeyError {
    Invalid,
    Dsa,
    RsaTooShort,
}

impl KeyError {
    pub fn message(&self) -> &'static str {
        match self {
            KeyError::Invalid => "The public key provided is not valid.",
            KeyError::Dsa => "DSA keys are not supported.",
            KeyError::RsaTooShort => "RSA keys must be at least 2048 bytes in length.",
        }
    }
}

pub struct ParsedKey {
    pub fingerprint: String,
    pub pem: String,
}

enum Key {
    Rsa { e: Vec<u8>, n: Vec<u8> },
    Ed25519(Vec<u8>),
    Ecdsa { curve: &'static str, q: Vec<u8> },
}

const CURVES: [(&str, &[u8]); 3] = [
    (
        "nistp256",
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    ),
    ("nistp384", &[0x2b, 0x81, 0x04, 0x00, 0x22]),
    ("nistp521", &[0x2b, 0x81, 0x04, 0x00, 0x23]),
];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.0.len() < 4 {
            return None;
        }
        let n = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]) as usize;
        let rest = &self.0[4..];
        if rest.len() < n {
            return None;
        }
        self.0 = &rest[n..];
        Some(&rest[..n])
    }
}

fn ssh_string(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 128 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Reads one DER TLV: (tag, content, rest).
fn der_read(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, start) = if first < 0x80 {
        (first, 2)
    } else {
        let k = first & 0x7f;
        if k == 0 || k > 4 {
            return None;
        }
        let mut n = 0usize;
        for i in 0..k {
            n = (n << 8) | *b.get(2 + i)? as usize;
        }
        (n, 2 + k)
    };
    let content = b.get(start..start.checked_add(len)?)?;
    Some((tag, content, &b[start + len..]))
}

/// A positive DER/SSH integer with exactly one leading zero when the high bit is set.
fn positive_int(b: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
    if trimmed.first().is_some_and(|x| x & 0x80 != 0) {
        let mut v = vec![0];
        v.extend(trimmed);
        v
    } else if trimmed.is_empty() {
        vec![0]
    } else {
        trimmed
    }
}

impl Key {
    fn wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Key::Rsa { e, n } => {
                ssh_string(&mut out, b"ssh-rsa");
                ssh_string(&mut out, &positive_int(e));
                ssh_string(&mut out, &positive_int(n));
            }
            Key::Ed25519(k) => {
                ssh_string(&mut out, b"ssh-ed25519");
                ssh_string(&mut out, k);
            }
            Key::Ecdsa { curve, q } => {
                ssh_string(&mut out, format!("ecdsa-sha2-{curve}").as_bytes());
                ssh_string(&mut out, curve.as_bytes());
                ssh_string(&mut out, q);
            }
        }
        out
    }

    fn spki(&self) -> Vec<u8> {
        let (alg, bits) = match self {
            Key::Rsa { e, n } => {
                let mut ints = der(0x02, &positive_int(n));
                ints.extend(der(0x02, &positive_int(e)));
                let mut alg = der(0x06, OID_RSA);
                alg.extend([0x05, 0x00]);
                (der(0x30, &alg), der(0x30, &ints))
            }
            Key::Ed25519(k) => (der(0x30, &der(0x06, OID_ED25519)), k.clone()),
            Key::Ecdsa { curve, q } => {
                let oid = CURVES
                    .iter()
                    .find(|(c, _)| c == curve)
                    .map(|(_, o)| *o)
                    .unwrap_or(&[]);
                let mut alg = der(0x06, OID_EC);
                alg.extend(der(0x06, oid));
                (der(0x30, &alg), q.clone())
            }
        };
        let mut bs = vec![0u8];
        bs.extend(bits);
        let mut body = alg;
        body.extend(der(0x03, &bs));
        der(0x30, &body)
    }
}

fn from_wire(blob: &[u8]) -> Result<Key, KeyError> {
    let mut r = Reader(blob);
    let kind = r.string().ok_or(KeyError::Invalid)?;
    match kind {
        b"ssh-rsa" => {
            let e = r.string().ok_or(KeyError::Invalid)?.to_vec();
            let n = r.string().ok_or(KeyError::Invalid)?.to_vec();
            Ok(Key::Rsa { e, n })
        }
        b"ssh-ed25519" => {
            let k = r.string().ok_or(KeyError::Invalid)?;
            (k.len() == 32)
                .then(|| Key::Ed25519(k.to_vec()))
                .ok_or(KeyError::Invalid)
        }
        b"ssh-dss" => Err(KeyError::Dsa),
        k if k.starts_with(b"ecdsa-sha2-") => {
            let curve = r.string().ok_or(KeyError::Invalid)?;
            let q = r.string().ok_or(KeyError::Invalid)?.to_vec();
            let curve = CURVES
                .iter()
                .find(|(c, _)| c.as_bytes() == curve)
                .map(|(c, _)| *c)
                .ok_or(KeyError::Invalid)?;
            Ok(Key::Ecdsa { curve, q })
        }
        _ => Err(KeyError::Invalid),
    }
}

fn from_spki(der_bytes: &[u8]) -> Result<Key, KeyError> {
    let bad = || KeyError::Invalid;
    let (t, spki, _) = der_read(der_bytes).ok_or_else(bad)?;
    if t != 0x30 {
        return Err(bad());
    }
    let (_, alg, rest) = der_read(spki).ok_or_else(bad)?;
    let (_, oid, alg_rest) = der_read(alg).ok_or_else(bad)?;
    let (t, bits, _) = der_read(rest).ok_or_else(bad)?;
    if t != 0x03 || bits.first() != Some(&0) {
        return Err(bad());
    }
    let bits = &bits[1..];
    match oid {
        OID_RSA => {
            let (_, seq, _) = der_read(bits).ok_or_else(bad)?;
            let (_, n, rest) = der_read(seq).ok_or_else(bad)?;
            let (_, e, _) = der_read(rest).ok_or_else(bad)?;
            Ok(Key::Rsa {
                e: e.to_vec(),
                n: n.to_vec(),
            })
        }
        OID_ED25519 if bits.len() == 32 => Ok(Key::Ed25519(bits.to_vec())),
        OID_EC => {
            let (_, curve_oid, _) = der_read(alg_rest).ok_or_else(bad)?;
            let curve = CURVES
                .iter()
                .find(|(_, o)| *o == curve_oid)
                .map(|(c, _)| *c)
                .ok_or_else(bad)?;
            Ok(Key::Ecdsa {
                curve,
                q: bits.to_vec(),
            })
        }
        [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01] => Err(KeyError::Dsa),
        _ => Err(bad()),
    }
}

/// Parses a public key as a user pastes it: an OpenSSH line or a PEM block.
pub fn parse(input: &str) -> Result<ParsedKey, KeyError> {
    let input = input.trim();
    let key = if input.starts_with("-----BEGIN") {
        if input.contains("DSA") {
            return Err(KeyError::Dsa);
        }
        let b64: String = input
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.trim().chars())
            .collect();
        let raw = STANDARD.decode(b64).map_err(|_| KeyError::Invalid)?;
        from_spki(&raw)?
    } else {
        let mut parts = input.split_whitespace();
        let kind = parts.next().ok_or(KeyError::Invalid)?;
        if kind == "ssh-dss" {
            return Err(KeyError::Dsa);
        }
        let blob = STANDARD
            .decode(parts.next().ok_or(KeyError::Invalid)?)
            .map_err(|_| KeyError::Invalid)?;
        let key = from_wire(&blob)?;
        if key.wire() != blob {
            return Err(KeyError::Invalid);
        }
        key
    };
    if let Key::Rsa { n, .. } = &key {
        let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
        let bits = n
            .first()
            .map(|f| n.len() * 8 - f.leading_zeros() as usize)
            .unwrap_or(0);
        if bits < 2048 {
            return Err(KeyError::RsaTooShort);
        }
    }
    let fingerprint = STANDARD_NO_PAD.encode(sha2::Sha256::digest(key.wire()));
    let b64 = STANDARD.encode(key.spki());
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\r\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        pem.push_str("\r\n");
    }
    pem.push_str("-----END PUBLIC KEY-----");
    Ok(ParsedKey { fingerprint, pem })
}

/// The wire-format OpenSSH line of a stored PEM key (for the SFTP auth lookups).
pub fn openssh_line(pem: &str) -> Option<String> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    let key = from_spki(&STANDARD.decode(b64).ok()?).ok()?;
    let wire = key.wire();
    let kind = Reader(&wire)
        .string()
        .map(|k| String::from_utf8_lossy(k).to_string())?;
    Some(format!("{kind} {}", STANDARD.encode(&wire)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPkj55t1WI3ByIXYMQTXRu5yu7wGBoEXn2MLVX8Q6G5 test@host";

    #[test]
    fn ed25519_round_trips_through_pem_with_the_same_fingerprint() {
        let k = parse(ED).unwrap();
        assert_eq!(k.fingerprint.len(), 43);
        assert!(k.pem.starts_with("-----BEGIN PUBLIC KEY-----\r\n"));
        let again = parse(&k.pem).unwrap();
        assert_eq!(again.fingerprint, k.fingerprint);
        assert_eq!(
            crate::http::remote::ssh_fingerprint(ED).unwrap(),
            k.fingerprint
        );
        let line = openssh_line(&k.pem).unwrap();
        assert_eq!(
            crate::http::remote::ssh_fingerprint(&line).unwrap(),
            k.fingerprint
        );
    }

    #[test]
    fn refuses_dsa_short_rsa_and_garbage() {
        assert_eq!(parse("ssh-dss AAAAB3NzaC1kc3M=").err(), Some(KeyError::Dsa));
        assert_eq!(parse("not a key").err(), Some(KeyError::Invalid));
        assert_eq!(parse("ssh-ed25519 !!!").err(), Some(KeyError::Invalid));
        // A 1024-bit RSA key.
        let mut blob = Vec::new();
        ssh_string(&mut blob, b"ssh-rsa");
        ssh_string(&mut blob, &[1, 0, 1]);
        let mut n = vec![0u8];
        n.extend(vec![0xc1; 128]);
        ssh_string(&mut blob, &n);
        let line = format!("ssh-rsa {}", STANDARD.encode(&blob));
        assert_eq!(parse(&line).err(), Some(KeyError::RsaTooShort));
        let mut blob = Vec::new();
        ssh_string(&mut blob, b"ssh-rsa");
        ssh_string(&mut blob, &[1, 0, 1]);
        let mut n = vec![0u8];
        n.extend(vec![0xc1; 256]);
        ssh_string(&mut blob, &n);
        let line = format!("ssh-rsa {}", STANDARD.encode(&blob));
        let k = parse(&line).unwrap();
        assert_eq!(parse(&k.pem).unwrap().fingerprint, k.fingerprint);
    }
}
