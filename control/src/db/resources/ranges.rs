//! One pasted line of a bulk add: a single value, or a range standing for
//! many (an IP block in CIDR notation, a run of phone numbers).
//!
//! A CIDR block stands for every address in it, the network and broadcast
//! addresses included: a pool holds addresses to hand out one by one
//! (routed singly, or bound on a host), not a subnet whose ends are
//! reserved, so `198.51.100.0/24` is 256 addresses. An admin who wants the
//! ends left out pastes narrower blocks or single addresses. A block's
//! host bits must be zero, so a typo in the prefix is caught instead of
//! silently meaning another block.
//!
//! A phone range is `+<first>-+<last>`, both E.164 with as many digits,
//! the last not below the first: `+4930123400-+4930123499` is 100 numbers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{MAX_BULK_VALUES, ResourceKind, truncate};

/// The canonical values `line` stands for; `Err` says what is wrong with it.
pub fn expand(kind: ResourceKind, line: &str) -> Result<Vec<String>, String> {
    match kind {
        ResourceKind::Ip if line.contains('/') => cidr(line),
        ResourceKind::Phone => match phone_range(line)? {
            Some(values) => Ok(values),
            None => kind.canonicalise(line).map(|value| vec![value]),
        },
        _ => kind.canonicalise(line).map(|value| vec![value]),
    }
}

fn too_many(raw: &str, count: u128, what: &str) -> String {
    format!(
        "{:?} holds {count} {what}; one bulk add takes at most {MAX_BULK_VALUES}: split it",
        truncate(raw)
    )
}

fn cidr(raw: &str) -> Result<Vec<String>, String> {
    let text = raw.trim();
    let refuse = |why: &str| format!("{:?} is not an IP block: {why}", truncate(raw));
    let (address, prefix) = text.split_once('/').ok_or_else(|| refuse("no /"))?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| refuse("the part before / is not an IP address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| refuse("the prefix after / must be a number"))?;
    let bits: u8 = if address.is_ipv4() { 32 } else { 128 };
    if prefix > bits {
        return Err(refuse(&format!("the prefix must be 0 to {bits}")));
    }
    let host_bits = u32::from(bits - prefix);
    let count = 1u128 << host_bits;
    if count > MAX_BULK_VALUES as u128 {
        return Err(too_many(raw, count, "addresses"));
    }
    let first = match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    if first & (count - 1) != 0 {
        let start = first & !(count - 1);
        let start = match address {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(start as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(start)),
        };
        return Err(refuse(&format!(
            "host bits are set; the block starts at {start}/{prefix}"
        )));
    }
    Ok((first..first + count)
        .map(|n| match address {
            IpAddr::V4(_) => Ipv4Addr::from(n as u32).to_string(),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)).to_canonical().to_string(),
        })
        .collect())
}

/// `None`: not a range (one `+` only), for the single-number rule.
fn phone_range(raw: &str) -> Result<Option<Vec<String>>, String> {
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    // Separators inside a number include `-`, but a second `+` can only
    // start the range's end.
    let Some(at) = compact.get(1..).and_then(|rest| rest.find("-+")) else {
        return Ok(None);
    };
    // `at` counts from the second character: `-` is at `at + 1`.
    let (first, last) = (&compact[..=at], &compact[at + 2..]);
    let phone = |part: &str| ResourceKind::Phone.canonicalise(part);
    let refuse = |why: String| format!("{:?} is not a phone range: {why}", truncate(raw));
    let first = phone(first).map_err(refuse)?;
    let last = phone(last).map_err(refuse)?;
    if first.len() != last.len() {
        return Err(refuse(
            "both ends must have as many digits (+4930123400-+4930123499)".into(),
        ));
    }
    let number = |text: &str| text[1..].parse::<u64>().expect("at most 15 digits");
    let (low, high) = (number(&first), number(&last));
    if high < low {
        return Err(refuse("the last number is below the first".into()));
    }
    let count = u128::from(high - low) + 1;
    if count > MAX_BULK_VALUES as u128 {
        return Err(too_many(raw, count, "numbers"));
    }
    let width = first.len() - 1;
    Ok(Some(
        (low..=high).map(|n| format!("+{n:0width$}")).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_24_is_all_256_addresses() {
        let block = expand(ResourceKind::Ip, " 198.51.100.0/24 ").unwrap();
        assert_eq!(block.len(), 256);
        assert_eq!(block[0], "198.51.100.0");
        assert_eq!(block[255], "198.51.100.255");
        assert_eq!(
            expand(ResourceKind::Ip, "192.0.2.7/32").unwrap(),
            ["192.0.2.7"]
        );
        assert_eq!(
            expand(ResourceKind::Ip, "0.0.0.0/16").unwrap().len(),
            65_536
        );
        assert_eq!(
            expand(ResourceKind::Ip, "2001:DB8::/126").unwrap(),
            ["2001:db8::", "2001:db8::1", "2001:db8::2", "2001:db8::3"]
        );
    }

    #[test]
    fn bad_blocks_say_why() {
        let ip = |raw| expand(ResourceKind::Ip, raw).unwrap_err();
        assert!(
            ip("198.51.100.7/24").contains("the block starts at 198.51.100.0/24"),
            "{}",
            ip("198.51.100.7/24")
        );
        assert!(ip("10.0.0.0/8").contains("holds 16777216 addresses"));
        assert!(ip("2001:db8::/64").contains("at most 65536"));
        assert!(ip("10.0.0.0/33").contains("0 to 32"));
        assert!(ip("10.0.0/24").contains("not an IP address"));
        assert!(ip("10.0.0.0/x").contains("must be a number"));
    }

    #[test]
    fn phone_ranges_keep_their_width() {
        let phones = expand(ResourceKind::Phone, "+4930123400-+4930123499").unwrap();
        assert_eq!(phones.len(), 100);
        assert_eq!(phones[0], "+4930123400");
        assert_eq!(phones[99], "+4930123499");
        assert_eq!(
            expand(ResourceKind::Phone, "+1 415 555-0100 - +1 415 555-0101").unwrap(),
            ["+14155550100", "+14155550101"]
        );
        // One number with dashes is not a range.
        assert_eq!(
            expand(ResourceKind::Phone, "+1-415-555-0100").unwrap(),
            ["+14155550100"]
        );
        let phone = |raw| expand(ResourceKind::Phone, raw).unwrap_err();
        assert!(phone("+4930123499-+4930123400").contains("below the first"));
        assert!(phone("+4930123400-+49301234000").contains("as many digits"));
        assert!(phone("+4930123400-+4930x").contains("not a phone range"));
        assert!(phone("+100000000-+199999999").contains("at most 65536"));
    }

    #[test]
    fn domains_have_no_ranges() {
        assert!(expand(ResourceKind::Domain, "example.com/24").is_err());
        assert_eq!(
            expand(ResourceKind::Domain, "Example.COM").unwrap(),
            ["example.com"]
        );
    }
}
