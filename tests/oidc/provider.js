// A real OpenID Provider (panva/oidc-provider) for the eID tests, shaped like a MitID broker:
// pairwise (pseudonymous) subjects, NSIS levels of assurance as acr values, a `name` claim in the
// ID token, the CPR number only with the `ssn` scope, PKCE (S256) required for every client.
//
// Usage: node provider.js <config.json>
//   config: { "port": 0, "clients": [ <client metadata> ... ] }
// Prints one line `READY <issuer>` on stdout once it listens on 127.0.0.1.
//
// The login is a plain HTML form (user name + the level the "user" authenticates at) and a consent
// form, so a test can complete the flow like a browser would, without a human.
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const LOA = 'https://data.gov.dk/concept/core/nsis/loa';
const ACR_VALUES = [`${LOA}/Low`, `${LOA}/Substantial`, `${LOA}/High`];

const ACCOUNTS = {
  anna: { name: 'Anna Testesen', cpr: '0101901234' },
  bo: { name: 'Bo Prøvesen', cpr: '0202802345' },
};

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function signingKey(kid, options) {
  const { privateKey } = generateKeyPairSync(...options);
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}

const jwks = {
  keys: [
    { ...signingKey('rsa-1', ['rsa', { modulusLength: 2048 }]), alg: 'RS256' },
    { ...signingKey('ec-1', ['ec', { namedCurve: 'P-256' }]), alg: 'ES256' },
  ],
};

const salt = randomBytes(16).toString('hex');

const provider = new Provider(`http://127.0.0.1:${config.port}`, {
  clients: config.clients,
  jwks,
  cookies: { keys: [randomBytes(32).toString('hex')] },
  acrValues: ACR_VALUES,
  scopes: ['openid', 'profile', 'ssn'],
  claims: {
    acr: null,
    auth_time: null,
    sid: null,
    iss: null,
    openid: ['sub'],
    profile: ['name'],
    ssn: ['dk.cpr'],
  },
  // Brokers put the identity claims in the ID token, not only behind userinfo.
  conformIdTokenClaims: false,
  subjectTypes: ['public', 'pairwise'],
  async pairwiseIdentifier(_ctx, accountId, client) {
    return createHash('sha256')
      .update(`${client.sectorIdentifier}|${accountId}|${salt}`)
      .digest('hex');
  },
  async findAccount(_ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: account.name, 'dk.cpr': account.cpr };
      },
    };
  },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { IdToken: 300, AccessToken: 300, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
});

provider.on('server_error', (_ctx, err) => console.error('server_error', err));

const page = (title, body) => `<!doctype html><html><head><title>${title}</title></head><body>${body}</body></html>`;

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction uid mismatch');
  const { prompt, params, session } = details;
  if (req.method === 'GET' && !action) {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    if (prompt.name === 'login') {
      const options = ACR_VALUES.map((v) => `<option value="${v}">${v}</option>`).join('');
      res.end(page('MitID (test)', `<form method="post" action="/interaction/${uid}/login">
<input name="login" value=""><select name="acr">${options}</select>
<button type="submit">Log ind</button></form>`));
    } else {
      res.end(page('Consent', `<form method="post" action="/interaction/${uid}/confirm">
<button type="submit">Godkend</button></form>`));
    }
    return;
  }
  const form = await readForm(req);
  if (action === 'login' && prompt.name === 'login') {
    const accountId = form.get('login');
    if (!ACCOUNTS[accountId]) {
      res.statusCode = 400;
      res.end('unknown test account');
      return;
    }
    await provider.interactionFinished(req, res, {
      login: { accountId, acr: form.get('acr') || ACR_VALUES[1], amr: ['mitid'] },
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'confirm' && prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.statusCode = 400;
  res.end('unexpected interaction step');
}

const callback = provider.callback();
const server = createServer((req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\/(login|confirm))?$/.exec(req.url.split('?')[0]);
  if (!match) {
    callback(req, res);
    return;
  }
  interaction(req, res, match[1], match[2]).catch((err) => {
    console.error('interaction error', err);
    res.statusCode = 500;
    res.end('interaction error');
  });
});

server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`READY http://127.0.0.1:${config.port}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
