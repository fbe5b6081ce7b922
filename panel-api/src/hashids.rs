//! Hashids (reference §10.1): the client API prints database ids as hashids, so the
//! encoding must match the replaced panel's byte for byte (same salt, length and
//! alphabet) for existing clients' stored ids to keep working.

const SEPS: &str = "cfhistuCFHISTU";
pub const PTERODACTYL_ALPHABET: &str =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890";

#[derive(Clone, Debug)]
pub struct Hashids {
    salt: Vec<u8>,
    min_length: usize,
    alphabet: Vec<u8>,
    seps: Vec<u8>,
    guards: Vec<u8>,
}

fn shuffle(alphabet: &mut [u8], salt: &[u8]) {
    if salt.is_empty() || alphabet.len() < 2 {
        return;
    }
    let (mut v, mut p) = (0usize, 0usize);
    for i in (1..alphabet.len()).rev() {
        v %= salt.len();
        let int = salt[v] as usize;
        p += int;
        let j = (int + v + p) % i;
        alphabet.swap(i, j);
        v += 1;
    }
}

impl Hashids {
    pub fn new(salt: &str, min_length: usize, alphabet: &str) -> Hashids {
        let mut alpha: Vec<u8> = Vec::new();
        for b in alphabet.bytes() {
            if !alpha.contains(&b) {
                alpha.push(b);
            }
        }
        let mut seps: Vec<u8> = SEPS.bytes().filter(|c| alpha.contains(c)).collect();
        alpha.retain(|c| !seps.contains(c));
        let salt_b = salt.as_bytes().to_vec();
        shuffle(&mut seps, &salt_b);
        if seps.is_empty() || alpha.len() as f64 / seps.len() as f64 > 3.5 {
            let mut seps_len = (alpha.len() as f64 / 3.5).ceil() as usize;
            if seps_len == 1 {
                seps_len += 1;
            }
            if seps_len > seps.len() {
                let diff = seps_len - seps.len();
                seps.extend_from_slice(&alpha[..diff]);
                alpha.drain(..diff);
            } else {
                seps.truncate(seps_len);
            }
        }
        shuffle(&mut alpha, &salt_b);
        let guard_count = (alpha.len() as f64 / 12.0).ceil() as usize;
        let guards: Vec<u8>;
        if alpha.len() < 3 {
            guards = seps[..guard_count].to_vec();
            seps.drain(..guard_count);
        } else {
            guards = alpha[..guard_count].to_vec();
            alpha.drain(..guard_count);
        }
        Hashids {
            salt: salt_b,
            min_length,
            alphabet: alpha,
            seps,
            guards,
        }
    }

    fn hash(mut input: u64, alphabet: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let len = alphabet.len() as u64;
        loop {
            out.insert(0, alphabet[(input % len) as usize]);
            input /= len;
            if input == 0 {
                return out;
            }
        }
    }

    fn unhash(input: &[u8], alphabet: &[u8]) -> Option<u64> {
        let mut n: u64 = 0;
        for c in input {
            let pos = alphabet.iter().position(|a| a == c)? as u64;
            n = n.checked_mul(alphabet.len() as u64)?.checked_add(pos)?;
        }
        Some(n)
    }

    pub fn encode(&self, numbers: &[u64]) -> String {
        if numbers.is_empty() {
            return String::new();
        }
        let mut alphabet = self.alphabet.clone();
        let hash_int: u64 = numbers
            .iter()
            .enumerate()
            .map(|(i, n)| n % (i as u64 + 100))
            .sum();
        let lottery = alphabet[(hash_int % alphabet.len() as u64) as usize];
        let mut ret = vec![lottery];
        for (i, &n) in numbers.iter().enumerate() {
            let mut buffer = vec![lottery];
            buffer.extend_from_slice(&self.salt);
            buffer.extend_from_slice(&alphabet);
            let key = buffer[..alphabet.len()].to_vec();
            shuffle(&mut alphabet, &key);
            let last = Self::hash(n, &alphabet);
            ret.extend_from_slice(&last);
            if i + 1 < numbers.len() {
                let m = n % (last[0] as u64 + i as u64);
                ret.push(self.seps[(m % self.seps.len() as u64) as usize]);
            }
        }
        if ret.len() < self.min_length {
            let gi = (hash_int + ret[0] as u64) % self.guards.len() as u64;
            ret.insert(0, self.guards[gi as usize]);
            if ret.len() < self.min_length {
                let gi = (hash_int + ret[2] as u64) % self.guards.len() as u64;
                ret.push(self.guards[gi as usize]);
            }
        }
        let half = alphabet.len() / 2;
        while ret.len() < self.min_length {
            let key = alphabet.clone();
            shuffle(&mut alphabet, &key);
            let mut next = alphabet[half..].to_vec();
            next.extend_from_slice(&ret);
            next.extend_from_slice(&alphabet[..half]);
            ret = next;
            let excess = ret.len() as i64 - self.min_length as i64;
            if excess > 0 {
                let start = (excess / 2) as usize;
                ret = ret[start..start + self.min_length].to_vec();
            }
        }
        String::from_utf8(ret).unwrap_or_default()
    }

    pub fn decode(&self, hash: &str) -> Vec<u64> {
        let bytes = hash.as_bytes();
        if bytes.is_empty() || !hash.is_ascii() {
            return vec![];
        }
        let parts: Vec<&[u8]> = bytes.split(|c| self.guards.contains(c)).collect();
        let idx = if parts.len() == 2 || parts.len() == 3 {
            1
        } else {
            0
        };
        let Some(breakdown) = parts.get(idx) else {
            return vec![];
        };
        if breakdown.is_empty() {
            return vec![];
        }
        let lottery = breakdown[0];
        let mut alphabet = self.alphabet.clone();
        let mut out = Vec::new();
        for sub in breakdown[1..].split(|c| self.seps.contains(c)) {
            let mut buffer = vec![lottery];
            buffer.extend_from_slice(&self.salt);
            buffer.extend_from_slice(&alphabet);
            let key = buffer[..alphabet.len()].to_vec();
            shuffle(&mut alphabet, &key);
            match Self::unhash(sub, &alphabet) {
                Some(n) => out.push(n),
                None => return vec![],
            }
        }
        if self.encode(&out) != hash {
            return vec![];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890";

    #[test]
    fn matches_the_reference_implementation_vectors() {
        let h = Hashids::new("this is my salt", 0, DEFAULT);
        assert_eq!(h.encode(&[12345]), "NkK9");
        assert_eq!(h.encode(&[1, 2, 3]), "laHquq");
        assert_eq!(h.decode("NkK9"), vec![12345]);
        let h8 = Hashids::new("this is my salt", 8, DEFAULT);
        assert_eq!(h8.encode(&[1]), "gB0NV05e");
        assert_eq!(h8.decode("gB0NV05e"), vec![1]);
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let h = Hashids::new("", 8, PTERODACTYL_ALPHABET);
        for n in [1u64, 7, 42, 1000, 987654] {
            let e = h.encode(&[n]);
            assert!(e.len() >= 8);
            assert_eq!(h.decode(&e), vec![n]);
        }
        assert!(h.decode("!!!").is_empty());
        assert!(h.decode("").is_empty());
        assert!(h.decode("zzzzzzzzzzzz").len() <= 1);
    }
}
