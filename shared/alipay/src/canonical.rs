//! The one canonicalization function: the string that RSA2 signs.

/// Which keys stay out of the signing string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Omit {
    /// Requests we sign and Alipay's "application gateway" messages: only `sign` is left out;
    /// `sign_type` is signed.
    Sign,
    /// Asynchronous trade notifications: `sign` and `sign_type` are both left out.
    SignAndSignType,
}

impl Omit {
    fn omits(self, key: &str) -> bool {
        key == "sign" || (self == Omit::SignAndSignType && key == "sign_type")
    }
}

/// Sorts by key in byte order, drops empty values and the omitted keys, and joins the raw
/// (not URL-encoded) values as `k=v` with `&`.
pub fn signing_string<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    omit: Omit,
) -> String {
    let mut kept: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(key, value)| !value.is_empty() && !omit.omits(key))
        .collect();
    // `str` orders by bytes, which is Alipay's order (ASCII keys; UTF-8 bytes otherwise).
    kept.sort_unstable();
    let mut out = String::with_capacity(kept.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (key, value)) in kept.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_drops_empty_and_sign() {
        let params = [
            ("b", "2"),
            ("sign", "x"),
            ("a", "1"),
            ("empty", ""),
            ("sign_type", "RSA2"),
        ];
        assert_eq!(signing_string(params, Omit::Sign), "a=1&b=2&sign_type=RSA2");
        assert_eq!(signing_string(params, Omit::SignAndSignType), "a=1&b=2");
    }

    #[test]
    fn byte_order_not_locale_order() {
        let params = [("a_b", "1"), ("aB", "2"), ("ab", "3"), ("A", "4")];
        assert_eq!(signing_string(params, Omit::Sign), "A=4&aB=2&a_b=1&ab=3");
    }

    #[test]
    fn values_are_raw() {
        let params = [("subject", "a b&c=d%2B+"), ("biz_content", r#"{"k":"v"}"#)];
        assert_eq!(
            signing_string(params, Omit::Sign),
            r#"biz_content={"k":"v"}&subject=a b&c=d%2B+"#
        );
    }
}
