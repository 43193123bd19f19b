//! Building signed requests: common parameters, a compact `biz_content` serialized once, the
//! signing string over exactly what is sent, and the three transports (GET URL, app order
//! string, form body).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::canonical::{Omit, signing_string};
use super::signer::{SignError, Signer, sign_base64};
use crate::china_time::{ChinaDateTime, china_timestamp};
use crate::ids::{AgreementNo, AppId, OutRequestNo, OutTradeNo, Subject, TradeNo};
use crate::money::Amount;

/// What the merchant's application puts in every request.
#[derive(Clone, Debug)]
pub struct AppParams {
    pub app_id: AppId,
    /// Where Alipay sends asynchronous notifications for payments; `None` leaves it to the
    /// application's setting on the open platform.
    pub notify_url: Option<String>,
    /// Certificate mode: `app_cert_sn` and `alipay_root_cert_sn`, sent and signed with every
    /// request.
    pub cert_sns: Option<super::trust::CertSns>,
}

/// The order fields every cashier takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentOrder {
    pub out_trade_no: OutTradeNo,
    pub total_amount: Amount,
    pub subject: Subject,
    pub time_expire: Option<ChinaDateTime>,
    /// A step-up: Alipay checks the payer (page, wap and app cashiers only).
    pub identity_check: Option<IdentityCheck>,
}

/// Alipay's check of who pays (`ext_user_info` with `need_check_info=T`): the payer's Alipay
/// account must be real-name verified and its holder at least `min_age`, or Alipay does not let
/// the trade be paid. The values are strings in Alipay's examples (`"min_age":"18"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityCheck {
    pub min_age: u8,
}

impl IdentityCheck {
    pub fn ext_user_info(&self) -> Value {
        let mut info = Map::new();
        info.insert("need_check_info".into(), "T".into());
        info.insert("min_age".into(), self.min_age.to_string().into());
        Value::Object(info)
    }
}

/// Which trade a server call is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TradeRef {
    OutTradeNo(OutTradeNo),
    TradeNo(TradeNo),
}

/// Every Alipay API the gateway calls, with its business fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlipayRequest {
    /// PC web cashier (`alipay.trade.page.pay`), a GET URL.
    PagePay {
        order: PaymentOrder,
        return_url: Option<String>,
    },
    /// Mobile web cashier (`alipay.trade.wap.pay`), a GET URL.
    WapPay {
        order: PaymentOrder,
        return_url: Option<String>,
        quit_url: Option<String>,
    },
    /// App payment (`alipay.trade.app.pay`): the order string for the app SDK.
    AppPay {
        order: PaymentOrder,
    },
    /// QR code payment (`alipay.trade.precreate`), a server call answering `qr_code`.
    Precreate {
        order: PaymentOrder,
    },
    Query {
        trade: TradeRef,
    },
    Close {
        trade: TradeRef,
    },
    Refund {
        trade: TradeRef,
        refund_amount: Amount,
        out_request_no: OutRequestNo,
        refund_reason: Option<String>,
    },
    RefundQuery {
        trade: TradeRef,
        out_request_no: OutRequestNo,
    },
    /// `alipay.data.dataservice.bill.downloadurl.query` for the `trade` bill of one China-time
    /// day (`yyyy-MM-dd`).
    BillDownloadUrl {
        bill_date: crate::china_time::ChinaDate,
    },
    /// `alipay.open.app.alipaycert.download`: Alipay's certificate with this SN (certificate
    /// mode, after Alipay rotated its certificate).
    CertDownload {
        alipay_cert_sn: String,
    },
    /// `alipay.user.agreement.page.sign`: the page (or app scheme, or QR) where the buyer signs
    /// a periodic agreement; its result is a `dut_user_sign` notification.
    AgreementPageSign {
        sign: crate::agreement::AgreementSign,
        return_url: Option<String>,
    },
    /// `alipay.user.agreement.query`: the agreement's status at Alipay.
    AgreementQuery {
        agreement_no: AgreementNo,
    },
    /// `alipay.user.agreement.unsign`: the merchant stops the agreement.
    AgreementUnsign {
        agreement_no: AgreementNo,
    },
    /// `alipay.user.agreement.executionplan.modify`: a later next charge date (never earlier).
    AgreementModify {
        agreement_no: AgreementNo,
        deduct_time: crate::china_time::ChinaDate,
        memo: String,
    },
    /// `alipay.trade.pay` under an agreement: a charge without the buyer, answered at once.
    AgreementPay {
        out_trade_no: OutTradeNo,
        total_amount: Amount,
        subject: Subject,
        agreement_no: AgreementNo,
        /// The channel's charge product: `GENERAL_WITHHOLDING` or `CYCLE_PAY_AUTH`.
        product_code: String,
        /// For a merchant contracted for cross-border settlement: `settle_currency`, sent with
        /// `trans_currency` CNY (the amount is CNY yuan).
        settle_currency: Option<String>,
    },
    /// Pay-and-sign on the PC cashier (`alipay.trade.page.pay` with `agreement_sign_params`):
    /// the buyer pays the first period and signs the agreement in one step.
    PagePayAndSign {
        order: PaymentOrder,
        return_url: Option<String>,
        sign: crate::agreement::AgreementSign,
        sign_notify_url: Option<String>,
    },
    /// Pay-and-sign in the Alipay app (`alipay.trade.app.pay` with `agreement_sign_params`).
    AppPayAndSign {
        order: PaymentOrder,
        sign: crate::agreement::AgreementSign,
        sign_notify_url: Option<String>,
    },
    /// `alipay.trade.cancel`: undoes a charge whose outcome stayed unknown.
    Cancel {
        trade: TradeRef,
    },
}

impl AlipayRequest {
    pub fn method(&self) -> &'static str {
        match self {
            AlipayRequest::PagePay { .. } | AlipayRequest::PagePayAndSign { .. } => {
                "alipay.trade.page.pay"
            }
            AlipayRequest::WapPay { .. } => "alipay.trade.wap.pay",
            AlipayRequest::AppPay { .. } | AlipayRequest::AppPayAndSign { .. } => {
                "alipay.trade.app.pay"
            }
            AlipayRequest::Precreate { .. } => "alipay.trade.precreate",
            AlipayRequest::Query { .. } => "alipay.trade.query",
            AlipayRequest::Close { .. } => "alipay.trade.close",
            AlipayRequest::Refund { .. } => "alipay.trade.refund",
            AlipayRequest::RefundQuery { .. } => "alipay.trade.fastpay.refund.query",
            AlipayRequest::BillDownloadUrl { .. } => {
                "alipay.data.dataservice.bill.downloadurl.query"
            }
            AlipayRequest::CertDownload { .. } => "alipay.open.app.alipaycert.download",
            AlipayRequest::AgreementPageSign { .. } => "alipay.user.agreement.page.sign",
            AlipayRequest::AgreementQuery { .. } => "alipay.user.agreement.query",
            AlipayRequest::AgreementUnsign { .. } => "alipay.user.agreement.unsign",
            AlipayRequest::AgreementModify { .. } => "alipay.user.agreement.executionplan.modify",
            AlipayRequest::AgreementPay { .. } => "alipay.trade.pay",
            AlipayRequest::Cancel { .. } => "alipay.trade.cancel",
        }
    }

    fn takes_notify_url(&self) -> bool {
        matches!(
            self,
            AlipayRequest::PagePay { .. }
                | AlipayRequest::WapPay { .. }
                | AlipayRequest::AppPay { .. }
                | AlipayRequest::Precreate { .. }
                | AlipayRequest::AgreementPageSign { .. }
                | AlipayRequest::PagePayAndSign { .. }
                | AlipayRequest::AppPayAndSign { .. }
                | AlipayRequest::AgreementUnsign { .. }
                | AlipayRequest::AgreementPay { .. }
        )
    }

    fn return_url(&self) -> Option<&str> {
        match self {
            AlipayRequest::PagePay { return_url, .. }
            | AlipayRequest::WapPay { return_url, .. }
            | AlipayRequest::AgreementPageSign { return_url, .. }
            | AlipayRequest::PagePayAndSign { return_url, .. } => return_url.as_deref(),
            _ => None,
        }
    }

    fn biz_content(&self) -> Value {
        match self {
            AlipayRequest::AgreementPageSign { sign, .. } => return sign.biz_content(),
            AlipayRequest::AgreementPay {
                out_trade_no,
                total_amount,
                subject,
                agreement_no,
                product_code,
                settle_currency,
            } => {
                let mut agreement = Map::new();
                agreement.insert("agreement_no".into(), agreement_no.as_str().into());
                let mut biz = Map::new();
                biz.insert("out_trade_no".into(), out_trade_no.as_str().into());
                biz.insert("total_amount".into(), total_amount.to_string().into());
                biz.insert("subject".into(), subject.as_str().into());
                biz.insert("product_code".into(), product_code.as_str().into());
                biz.insert("agreement_params".into(), Value::Object(agreement));
                if let Some(settle_currency) = settle_currency {
                    biz.insert("trans_currency".into(), "CNY".into());
                    biz.insert("settle_currency".into(), settle_currency.as_str().into());
                }
                return Value::Object(biz);
            }
            AlipayRequest::PagePayAndSign {
                order,
                sign,
                sign_notify_url,
                ..
            } => {
                return order_and_sign(order, "FAST_INSTANT_TRADE_PAY", sign, sign_notify_url);
            }
            AlipayRequest::AppPayAndSign {
                order,
                sign,
                sign_notify_url,
            } => return order_and_sign(order, "QUICK_MSECURITY_PAY", sign, sign_notify_url),
            _ => {}
        }
        let mut biz = Map::new();
        let mut put = |key: &str, value: Option<&str>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                biz.insert(key.to_owned(), Value::String(value.to_owned()));
            }
        };
        match self {
            AlipayRequest::PagePay { order, .. } => {
                put_order(&mut put, order, Some("FAST_INSTANT_TRADE_PAY"));
            }
            AlipayRequest::WapPay {
                order, quit_url, ..
            } => {
                put_order(&mut put, order, Some("QUICK_WAP_WAY"));
                put("quit_url", quit_url.as_deref());
            }
            AlipayRequest::AppPay { order } => {
                put_order(&mut put, order, Some("QUICK_MSECURITY_PAY"))
            }
            AlipayRequest::Precreate { order } => put_order(&mut put, order, None),
            AlipayRequest::Query { trade }
            | AlipayRequest::Close { trade }
            | AlipayRequest::Cancel { trade } => put_trade(&mut put, trade),
            AlipayRequest::Refund {
                trade,
                refund_amount,
                out_request_no,
                refund_reason,
            } => {
                put_trade(&mut put, trade);
                put("refund_amount", Some(&refund_amount.to_string()));
                put("out_request_no", Some(out_request_no.as_str()));
                put("refund_reason", refund_reason.as_deref());
            }
            AlipayRequest::RefundQuery {
                trade,
                out_request_no,
            } => {
                put_trade(&mut put, trade);
                put("out_request_no", Some(out_request_no.as_str()));
            }
            AlipayRequest::BillDownloadUrl { bill_date } => {
                put("bill_type", Some("trade"));
                put("bill_date", Some(&bill_date.to_string()));
            }
            AlipayRequest::CertDownload { alipay_cert_sn } => {
                put("alipay_cert_sn", Some(alipay_cert_sn));
            }
            AlipayRequest::AgreementQuery { agreement_no }
            | AlipayRequest::AgreementUnsign { agreement_no } => {
                put("agreement_no", Some(agreement_no.as_str()));
            }
            AlipayRequest::AgreementModify {
                agreement_no,
                deduct_time,
                memo,
            } => {
                put("agreement_no", Some(agreement_no.as_str()));
                put("deduct_time", Some(&deduct_time.to_string()));
                put("memo", Some(memo));
            }
            AlipayRequest::AgreementPageSign { .. }
            | AlipayRequest::AgreementPay { .. }
            | AlipayRequest::PagePayAndSign { .. }
            | AlipayRequest::AppPayAndSign { .. } => {}
        }
        if let AlipayRequest::PagePay { order, .. }
        | AlipayRequest::WapPay { order, .. }
        | AlipayRequest::AppPay { order } = self
            && let Some(check) = &order.identity_check
        {
            biz.insert("ext_user_info".to_owned(), check.ext_user_info());
        }
        if let AlipayRequest::RefundQuery { .. } = self {
            // Alipay returns when it paid the refund only when asked (docs/alipay/operations.md §6): the
            // day the bill shows it on.
            biz.insert(
                "query_options".to_owned(),
                Value::Array(vec![Value::String("gmt_refund_pay".to_owned())]),
            );
        }
        Value::Object(biz)
    }
}

fn put_order(
    put: &mut impl FnMut(&str, Option<&str>),
    order: &PaymentOrder,
    product_code: Option<&str>,
) {
    put("out_trade_no", Some(order.out_trade_no.as_str()));
    put("total_amount", Some(&order.total_amount.to_string()));
    put("subject", Some(order.subject.as_str()));
    put("product_code", product_code);
    put(
        "time_expire",
        order.time_expire.as_ref().map(ChinaDateTime::as_str),
    );
}

/// A cashier payment's fields with `agreement_sign_params` (pay-and-sign).
fn order_and_sign(
    order: &PaymentOrder,
    product_code: &str,
    sign: &crate::agreement::AgreementSign,
    sign_notify_url: &Option<String>,
) -> Value {
    let mut biz = Map::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            biz.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    };
    put_order(&mut put, order, Some(product_code));
    biz.insert(
        "agreement_sign_params".to_owned(),
        sign.sign_params(sign_notify_url.as_deref()),
    );
    Value::Object(biz)
}

fn put_trade(put: &mut impl FnMut(&str, Option<&str>), trade: &TradeRef) {
    match trade {
        TradeRef::OutTradeNo(no) => put("out_trade_no", Some(no.as_str())),
        TradeRef::TradeNo(no) => put("trade_no", Some(no.as_str())),
    }
}

/// A request with every parameter that will be sent, not yet signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsignedRequest {
    method: &'static str,
    params: BTreeMap<&'static str, String>,
}

impl UnsignedRequest {
    /// Builds the parameters; `now_unix_seconds` comes from the caller's clock.
    pub fn new(request: &AlipayRequest, app: &AppParams, now_unix_seconds: i64) -> Self {
        let mut params = BTreeMap::new();
        params.insert("app_id", app.app_id.to_string());
        params.insert("method", request.method().to_owned());
        params.insert("format", "JSON".to_owned());
        params.insert("charset", "utf-8".to_owned());
        params.insert("sign_type", "RSA2".to_owned());
        params.insert("timestamp", china_timestamp(now_unix_seconds));
        params.insert("version", "1.0".to_owned());
        if request.takes_notify_url()
            && let Some(url) = &app.notify_url
        {
            params.insert("notify_url", url.clone());
        }
        if let Some(url) = request.return_url() {
            params.insert("return_url", url.to_owned());
        }
        if let Some(sns) = &app.cert_sns {
            params.insert("app_cert_sn", sns.app_cert_sn.clone());
            params.insert("alipay_root_cert_sn", sns.alipay_root_cert_sn.clone());
        }
        // Serialized once: the signed string and the sent string are the same bytes.
        params.insert("biz_content", request.biz_content().to_string());
        // An empty parameter is never sent, so the signed set always equals the sent set.
        params.retain(|_, value| !value.is_empty());
        UnsignedRequest {
            method: request.method(),
            params,
        }
    }

    pub fn method(&self) -> &'static str {
        self.method
    }

    pub fn params(&self) -> &BTreeMap<&'static str, String> {
        &self.params
    }

    pub fn signing_string(&self) -> String {
        signing_string(
            self.params.iter().map(|(k, v)| (*k, v.as_str())),
            Omit::Sign,
        )
    }

    /// Attaches a signature computed over [`Self::signing_string`].
    pub fn with_sign(self, sign: String) -> SignedRequest {
        SignedRequest {
            method: self.method,
            params: self.params,
            sign,
        }
    }

    /// Signs with `signer` (one call to it) and attaches the signature.
    pub async fn sign(self, signer: &dyn Signer) -> Result<SignedRequest, SignError> {
        let sign = sign_base64(signer, &self.signing_string()).await?;
        Ok(self.with_sign(sign))
    }
}

/// A signed request, ready for its transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    method: &'static str,
    params: BTreeMap<&'static str, String>,
    sign: String,
}

impl SignedRequest {
    pub fn method(&self) -> &'static str {
        self.method
    }

    pub fn sign(&self) -> &str {
        &self.sign
    }

    /// All parameters, `application/x-www-form-urlencoded`: the form body of a server call.
    pub fn form_body(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.params {
            form.append_pair(key, value);
        }
        form.append_pair("sign", &self.sign);
        form.finish()
    }

    /// The order string handed to Alipay's app SDK (`alipay.trade.app.pay`).
    pub fn order_string(&self) -> String {
        self.form_body()
    }

    /// The cashier URL for page and wap pay: the gateway with every parameter in the query.
    pub fn gateway_url(&self, gateway: &str) -> String {
        let separator = if gateway.contains('?') { '&' } else { '?' };
        format!("{gateway}{separator}{}", self.form_body())
    }

    /// The business fields as sent, for callers that keep a record of what was asked.
    pub fn biz_content(&self) -> &str {
        self.params.get("biz_content").map_or("", String::as_str)
    }
}
