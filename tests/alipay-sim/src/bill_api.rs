//! The daily bill's download: `alipay.data.dataservice.bill.downloadurl.query` answers a URL
//! valid for 30 s and one download; `GET /downloadBillFile.resource` serves the zip.

#[allow(unused_imports)]
use crate::*;

/// `alipay.data.dataservice.bill.downloadurl.query`: the URL of a day's `trade` bill, valid for
/// 30 s and one download; `isp.bill_not_exist` before the day is over in China time (unless
/// closed early) or when the day has no rows (docs/alipay/operations.md §2).
pub(crate) fn bill_url(inner: &Arc<Inner>, bill_type: &str, bill_date: &str) -> Value {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if bill_type != "trade" || time::Date::parse(bill_date, format).is_err() {
        return business_error("invalid_arguments", "参数不合法");
    }
    let (now, unix) = china_now(inner);
    let mut state = lock(&inner.state);
    let over = bill_date < &now[..10] || state.closed_days.contains(bill_date);
    if !over {
        return business_error("isp.bill_not_exist", "账单不存在");
    }
    let trades: Vec<Trade> = state.trades.values().cloned().collect();
    let lines = bill::lines_of_day(&trades, bill_date);
    if lines.is_empty() {
        return business_error("isp.bill_not_exist", "账单不存在");
    }
    let pid = &inner.config.seller_id;
    let exported = china_text(unix)
        .replacen('-', "年", 1)
        .replacen('-', "月", 1)
        .replacen(' ', "日 ", 1);
    let zip = bill::bill_zip(pid, bill_date, &lines, &exported);
    let name = bill::zip_name(pid, bill_date);
    let token = uuid::Uuid::new_v4().simple().to_string();
    state
        .bill_links
        .insert(token.clone(), (name.clone(), zip, unix * 1000 + 30_000));
    let url = format!(
        "{}/downloadBillFile.resource?bizType=trade&userId={pid}0156&fileType=csv.zip&bizDates={}&downloadFileName={name}&token={token}",
        inner.base_url,
        bill_date.replace('-', "")
    );
    json!({"code": "10000", "msg": "Success", "bill_download_url": url})
}

pub(crate) async fn download_bill(
    State(inner): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = decode_form(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let token = params.get("token").cloned().unwrap_or_default();
    let link = lock(&inner.state).bill_links.remove(&token);
    let now_ms = alipay_ms(&inner);
    match link {
        Some((name, zip, valid_until)) if now_ms <= valid_until => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename={name}"),
                ),
            ],
            zip,
        )
            .into_response(),
        // Used, expired or never issued: Alipay's file server refuses it.
        _ => (StatusCode::FORBIDDEN, "the link has expired").into_response(),
    }
}
