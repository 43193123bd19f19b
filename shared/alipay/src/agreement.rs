//! Agreements (周期扣款 / 商家扣款, docs/alipay/operations.md §4): what a periodic agreement
//! asks the buyer to sign, the app scheme that opens it in the Alipay app, and the sign and
//! unsign notifications Alipay posts to the notify URL.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::china_time::ChinaDate;
use crate::ids::{AgreementNo, ExternalAgreementNo};
use crate::money::Amount;
use crate::notify::NotifyError;

/// `personal_product_code` of a periodic agreement.
pub const CYCLE_PAY_PERSONAL_PRODUCT: &str = "CYCLE_PAY_AUTH_P";

/// How a period is counted (`period_rule_params.period_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PeriodType {
    /// Every `period` days, at least 7.
    Day,
    /// Every `period` natural months, on a day of the month from 1 to 28.
    Month,
}

impl PeriodType {
    pub fn parse(text: &str) -> Option<PeriodType> {
        match text {
            "DAY" => Some(PeriodType::Day),
            "MONTH" => Some(PeriodType::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PeriodType::Day => "DAY",
            PeriodType::Month => "MONTH",
        }
    }
}

/// `period_rule_params`: the schedule and the caps the buyer agrees to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodRule {
    pub period_type: PeriodType,
    pub period: u32,
    /// The first charge date (`execute_time`).
    pub execute_time: ChinaDate,
    /// The most one charge may take (required).
    pub single_amount: Amount,
    pub total_amount: Option<Amount>,
    pub total_payments: Option<u32>,
}

impl PeriodRule {
    fn to_json(&self) -> Value {
        let mut rule = Map::new();
        rule.insert("period_type".into(), self.period_type.as_str().into());
        rule.insert("period".into(), self.period.into());
        rule.insert("execute_time".into(), self.execute_time.to_string().into());
        rule.insert(
            "single_amount".into(),
            self.single_amount.to_string().into(),
        );
        if let Some(total) = self.total_amount {
            rule.insert("total_amount".into(), total.to_string().into());
        }
        if let Some(count) = self.total_payments {
            rule.insert("total_payments".into(), count.into());
        }
        Value::Object(rule)
    }
}

/// Where the buyer signs (`access_params.channel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignChannel {
    /// In the Alipay app (`ALIPAYAPP`): the `alipays://` scheme.
    AlipayApp,
    /// A QR code the buyer scans (`QRCODE`).
    Qrcode,
    /// A QR code or an SMS (`QRCODEORSMS`).
    QrcodeOrSms,
}

impl SignChannel {
    pub fn parse(text: &str) -> Option<SignChannel> {
        match text {
            "ALIPAYAPP" => Some(SignChannel::AlipayApp),
            "QRCODE" => Some(SignChannel::Qrcode),
            "QRCODEORSMS" => Some(SignChannel::QrcodeOrSms),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignChannel::AlipayApp => "ALIPAYAPP",
            SignChannel::Qrcode => "QRCODE",
            SignChannel::QrcodeOrSms => "QRCODEORSMS",
        }
    }
}

/// `alipay.user.agreement.page.sign` for a periodic agreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementSign {
    pub external_agreement_no: ExternalAgreementNo,
    /// The charge's product (`GENERAL_WITHHOLDING` or, on older contracts, `CYCLE_PAY_AUTH`).
    pub product_code: String,
    /// The merchant's contracted scene; never `DEFAULT|DEFAULT` with an `external_agreement_no`.
    pub sign_scene: String,
    pub channel: SignChannel,
    pub rule: PeriodRule,
}

impl AgreementSign {
    /// The business fields, in the layout of `AlipayUserAgreementPageSignModel`.
    pub fn biz_content(&self) -> Value {
        let mut biz = Map::new();
        biz.insert(
            "personal_product_code".into(),
            CYCLE_PAY_PERSONAL_PRODUCT.into(),
        );
        biz.insert("product_code".into(), self.product_code.clone().into());
        biz.insert("sign_scene".into(), self.sign_scene.clone().into());
        biz.insert(
            "external_agreement_no".into(),
            self.external_agreement_no.as_str().into(),
        );
        let mut access = Map::new();
        access.insert("channel".into(), self.channel.as_str().into());
        biz.insert("access_params".into(), Value::Object(access));
        biz.insert("period_rule_params".into(), self.rule.to_json());
        Value::Object(biz)
    }
}

impl AgreementSign {
    /// `agreement_sign_params` of a cashier payment that signs the agreement as the buyer pays
    /// (pay-and-sign): the agreement's fields, and where its sign notice goes.
    pub fn sign_params(&self, sign_notify_url: Option<&str>) -> Value {
        let mut params = match self.biz_content() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        // The charge's product is the payment's own here.
        params.remove("product_code");
        if let Some(url) = sign_notify_url {
            params.insert("sign_notify_url".into(), url.into());
        }
        Value::Object(params)
    }
}

/// The Alipay app's scheme that opens a signed agreement query (`ALIPAYAPP` channel).
pub fn app_sign_scheme(signed_query: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(signed_query.as_bytes()).collect();
    format!(
        "alipays://platformapi/startapp?appId=60000157&appClearTop=false&startMultApp=YES&sign_params={encoded}"
    )
}

/// An agreement's state at Alipay (`status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AgreementStatus {
    /// Created, not signed yet.
    Temp,
    /// Signed: charges may be taken.
    Normal,
    /// Stopped: unsigned by either side, or lapsed.
    Stop,
}

impl AgreementStatus {
    pub fn parse(text: &str) -> Option<AgreementStatus> {
        match text {
            "TEMP" => Some(AgreementStatus::Temp),
            "NORMAL" => Some(AgreementStatus::Normal),
            "STOP" | "UNSIGN" => Some(AgreementStatus::Stop),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AgreementStatus::Temp => "TEMP",
            AgreementStatus::Normal => "NORMAL",
            AgreementStatus::Stop => "STOP",
        }
    }
}

/// A verified `dut_user_sign` or `dut_user_unsign` notification. The buyer's ids are left out:
/// the agreement names the buyer from here on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgreementNotification {
    pub notify_id: String,
    pub notify_type: String,
    pub app_id: String,
    pub external_agreement_no: ExternalAgreementNo,
    pub agreement_no: AgreementNo,
    pub status: AgreementStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_time: Option<String>,
}

/// The `notify_type`s of agreement notifications.
pub const SIGN_NOTIFY: &str = "dut_user_sign";
pub const UNSIGN_NOTIFY: &str = "dut_user_unsign";

/// Whether verified fields are an agreement notification rather than a trade's.
pub fn is_agreement_notification(fields: &BTreeMap<String, String>) -> bool {
    matches!(
        fields.get("notify_type").map(String::as_str),
        Some(SIGN_NOTIFY | UNSIGN_NOTIFY)
    )
}

impl AgreementNotification {
    /// Types already verified fields (`notify::verify_fields`).
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Result<Self, NotifyError> {
        let required = |name: &'static str| {
            fields
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or(NotifyError::MissingField(name))
        };
        let optional = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        let invalid = |field: &'static str, problem: &str| NotifyError::InvalidField {
            field,
            problem: problem.to_owned(),
        };
        let notify_type = required("notify_type")?;
        let status = match (notify_type.as_str(), optional("status")) {
            (UNSIGN_NOTIFY, _) => AgreementStatus::Stop,
            (_, Some(text)) => AgreementStatus::parse(&text)
                .ok_or_else(|| invalid("status", "is not a known agreement status"))?,
            (_, None) => return Err(NotifyError::MissingField("status")),
        };
        Ok(AgreementNotification {
            notify_id: required("notify_id")?,
            app_id: required("app_id")?,
            external_agreement_no: ExternalAgreementNo::parse(required("external_agreement_no")?)
                .map_err(|e| invalid("external_agreement_no", e.0))?,
            agreement_no: AgreementNo::parse(required("agreement_no")?)
                .map_err(|e| invalid("agreement_no", e.0))?,
            status,
            sign_time: optional("sign_time"),
            invalid_time: optional("invalid_time"),
            notify_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_sign_notice_as_alipay_sends_it_is_read() {
        // The real notice of docs/alipay/operations.md §4, signature elided.
        let notice = fields(&[
            ("charset", "utf-8"),
            ("notify_time", "2026-12-04 10:00:00"),
            ("alipay_user_id", "2088101122136241"),
            ("external_agreement_no", "sub7Q2ZK9"),
            ("version", "1.0"),
            ("sign_time", "2026-12-04 09:59:58"),
            ("notify_id", "n1"),
            ("notify_type", "dut_user_sign"),
            ("agreement_no", "20225310838635316223"),
            ("invalid_time", "2115-02-01 00:00:00"),
            ("auth_app_id", "2021000123456789"),
            ("personal_product_code", "CYCLE_PAY_AUTH_P"),
            ("app_id", "2021000123456789"),
            ("sign_type", "RSA2"),
            ("sign_scene", "INDUSTRY|SOCIALIZATION"),
            ("status", "NORMAL"),
            ("alipay_logon_id", "157******67"),
        ]);
        assert!(is_agreement_notification(&notice));
        let read = AgreementNotification::from_fields(&notice).expect("read");
        assert_eq!(read.status, AgreementStatus::Normal);
        assert_eq!(read.agreement_no.as_str(), "20225310838635316223");
        assert_eq!(read.external_agreement_no.as_str(), "sub7Q2ZK9");
        let shown = serde_json::to_string(&read).expect("json");
        assert!(!shown.contains("2088101122136241") && !shown.contains("157******67"));
    }

    #[test]
    fn an_unsign_notice_stops_the_agreement_whatever_its_status_says() {
        let mut notice = fields(&[
            ("notify_id", "n2"),
            ("notify_type", "dut_user_unsign"),
            ("app_id", "2021000123456789"),
            ("external_agreement_no", "sub1"),
            ("agreement_no", "2022"),
            ("status", "UNSIGN"),
        ]);
        assert_eq!(
            AgreementNotification::from_fields(&notice)
                .expect("read")
                .status,
            AgreementStatus::Stop
        );
        notice.remove("status");
        assert_eq!(
            AgreementNotification::from_fields(&notice)
                .expect("read")
                .status,
            AgreementStatus::Stop
        );
    }

    #[test]
    fn a_sign_notice_without_a_known_status_or_a_valid_number_is_refused() {
        let mut notice = fields(&[
            ("notify_id", "n3"),
            ("notify_type", "dut_user_sign"),
            ("app_id", "2021000123456789"),
            ("external_agreement_no", "sub1"),
            ("agreement_no", "2022"),
        ]);
        assert!(matches!(
            AgreementNotification::from_fields(&notice),
            Err(NotifyError::MissingField("status"))
        ));
        notice.insert("status".into(), "SIGNED".into());
        assert!(AgreementNotification::from_fields(&notice).is_err());
        notice.insert("status".into(), "NORMAL".into());
        notice.insert("external_agreement_no".into(), "sub-1".into());
        assert!(AgreementNotification::from_fields(&notice).is_err());
    }

    #[test]
    fn the_app_scheme_carries_the_signed_query_encoded_once() {
        let scheme = app_sign_scheme("a=1&sign=x+y/z=");
        assert_eq!(
            scheme,
            "alipays://platformapi/startapp?appId=60000157&appClearTop=false&startMultApp=YES&sign_params=a%3D1%26sign%3Dx%2By%2Fz%3D"
        );
    }

    #[test]
    fn a_period_rule_is_laid_out_with_numbers_and_decimal_texts() {
        let rule = PeriodRule {
            period_type: PeriodType::Month,
            period: 1,
            execute_time: ChinaDate::parse("2027-01-05").expect("date"),
            single_amount: Amount::parse("19.90").expect("amount"),
            total_amount: None,
            total_payments: Some(12),
        };
        assert_eq!(
            rule.to_json().to_string(),
            r#"{"execute_time":"2027-01-05","period":1,"period_type":"MONTH","single_amount":"19.90","total_payments":12}"#
        );
    }
}
