// Alipay's official Node.js SDK (npm alipay-sdk) as an oracle for tests/it/differential.rs.
//
// Reads {cases, python} (JSON) on stdin, where `python` is oracle.py's output (the notification
// and response bodies as Alipay would send them), and writes on stdout what alipay-sdk makes of
// them:
//   - requests: the signature `sdkExecute` puts on each request's parameters, and the
//     biz_content text it serialised (JSON.stringify) from the parsed object;
//   - notifications: `checkNotifySignV2` on each body and its tampered copy;
//   - responses: `checkResponseSign` on each body and its tampered copy.
//
// alipay-sdk keeps empty values in what it signs and verifies; the Java SDK (and Alipay) leave
// them out. Empty values are dropped before they reach it, so it works by Alipay's rule.
'use strict';

const { AlipaySdk } = require('alipay-sdk');

const pem = (text) => text.split('\n').filter((line) => !line.startsWith('#')).join('\n');
const nonEmpty = (pairs) => Object.fromEntries(Object.entries(pairs).filter(([, v]) => v !== ''));
const COMMON = new Set(['app_id', 'method', 'charset', 'version', 'sign_type', 'biz_content']);

function requestSign(sdk, params) {
  const bizParams = {};
  for (const [key, value] of Object.entries(nonEmpty(params))) {
    if (!COMMON.has(key)) bizParams[key] = value;
  }
  if (params.biz_content) bizParams.bizContent = JSON.parse(params.biz_content);
  // Each request's own common parameters, as the SDK's configuration gives them.
  sdk.config.appId = params.app_id;
  sdk.config.charset = params.charset;
  sdk.config.version = params.version;
  sdk.config.signType = params.sign_type;
  const signed = new URLSearchParams(
    sdk.sdkExecute(params.method, bizParams, { bizContentAutoSnakeCase: false }));
  return { sign: signed.get('sign'), biz_content: signed.get('biz_content') };
}

function notificationVerdict(sdk, body) {
  const fields = nonEmpty(Object.fromEntries(new URLSearchParams(body)));
  return sdk.checkNotifySignV2(fields);
}

function responseVerdict(sdk, body, responseKey) {
  try {
    sdk.checkResponseSign(body, responseKey, JSON.parse(body).sign, 'differential');
    return true;
  } catch {
    return false;
  }
}

function main() {
  const { cases, python } = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
  const sdk = new AlipaySdk({
    appId: cases.app_id,
    privateKey: pem(cases.app_private_key),
    alipayPublicKey: pem(cases.alipay_public_key),
    keyType: 'PKCS1',
    signType: 'RSA2',
  });
  const requests = cases.requests.map((c) => requestSign(sdk, c.params));
  const notifications = python.notifications.map((n) => ({
    verdict: notificationVerdict(sdk, n.body),
    tampered_verdict: notificationVerdict(sdk, n.tampered_body),
  }));
  const responses = cases.responses.map((c, i) => {
    const key = `${c.method.replace(/\./g, '_')}_response`;
    return {
      verdict: responseVerdict(sdk, python.responses[i].body, key),
      tampered_verdict: responseVerdict(sdk, python.responses[i].tampered_body, key),
    };
  });
  process.stdout.write(JSON.stringify({ requests, notifications, responses }));
}

main();
