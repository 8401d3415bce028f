#!/usr/bin/env node
// The official MCP TypeScript SDK client (@modelcontextprotocol/sdk, pinned in package-lock.json), driven
// headlessly by tests/integration/test_sdk_typescript.py.
//
// The SDK does the OAuth work itself (StreamableHTTPClientTransport + an OAuthClientProvider): on the MCP
// server's 401 it reads the protected resource metadata (RFC 9728), discovers the authorization server
// (RFC 8414 / OpenID discovery), registers dynamically (RFC 7591) and builds the authorization URL with PKCE
// S256 (RFC 7636) and an RFC 8707 `resource`. This script is only the application around it, talking to the
// test over JSON lines:
//
//   stdout  {"event":"authorize","url":...}   the SDK sends the user to this URL (redirectToAuthorization)
//   stdin   {"callback_url":...}                where the provider redirected the browser after login/consent
//   stdout  {"event":"result",...}              the registered client, the tokens and the tool results
//   stdout  {"event":"error","message":...}     anything else (exit status 1)
//
// After the first tool call it throws the access token away (as if it had expired) and calls the tool
// again on a new connection: with a refresh token the SDK refreshes at the token endpoint, without one it
// asks for a new authorization (a second "authorize" line).
//
// With --client-metadata-url URL the provider offers that URL as its Client ID Metadata Document
// (`clientMetadataUrl`, SEP-991): the SDK uses it as the client_id, without registering, when the authorization
// server advertises client_id_metadata_document_supported.
//
// Usage: node client.mjs --server URL --redirect-uri URL [--auth-method M] [--scope S] [--client-name N]
//                        [--client-metadata-url URL]

import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const { values: options } = parseArgs({
    options: {
        server: { type: 'string' },
        'redirect-uri': { type: 'string' },
        'auth-method': { type: 'string', default: 'none' },
        scope: { type: 'string' },
        'client-name': { type: 'string', default: 'dcr-gateway e2e (TypeScript SDK)' },
        tool: { type: 'string', default: 'whoami' },
        'client-metadata-url': { type: 'string' }
    }
});
if (!options.server || !options['redirect-uri']) {
    throw new Error('--server and --redirect-uri are required');
}

const emit = event => process.stdout.write(`${JSON.stringify(event)}\n`);

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function readMessage() {
    const { value, done } = await stdinLines.next();
    if (done) throw new Error('stdin closed before the callback URL arrived');
    return JSON.parse(value);
}

/** An in-memory OAuthClientProvider whose "browser" is the test on the other end of stdout/stdin. */
class HeadlessOAuthClientProvider {
    constructor(redirectUrl, clientMetadata, clientMetadataUrl) {
        this._redirectUrl = redirectUrl;
        this._clientMetadata = clientMetadata;
        this.clientMetadataUrl = clientMetadataUrl;
        this.authorizationUrls = [];
        this.savedTokens = [];
    }
    get redirectUrl() {
        return this._redirectUrl;
    }
    get clientMetadata() {
        return this._clientMetadata;
    }
    state() {
        this.expectedState = randomBytes(24).toString('base64url');
        return this.expectedState;
    }
    clientInformation() {
        return this._clientInformation;
    }
    saveClientInformation(clientInformation) {
        this._clientInformation = clientInformation;
    }
    tokens() {
        return this._tokens;
    }
    saveTokens(tokens) {
        this._tokens = tokens;
        this.savedTokens.push(tokens);
    }
    redirectToAuthorization(authorizationUrl) {
        this.authorizationUrls.push(authorizationUrl.href);
        emit({ event: 'authorize', url: authorizationUrl.href });
    }
    saveCodeVerifier(codeVerifier) {
        this._codeVerifier = codeVerifier;
    }
    codeVerifier() {
        if (!this._codeVerifier) throw new Error('no code verifier saved');
        return this._codeVerifier;
    }
    /** Pretend the access token expired: keep the refresh token, drop the access token. */
    expireAccessToken() {
        this._tokens = { ...this._tokens, access_token: 'expired-access-token' };
    }
}

/** The code from the provider's redirect, after checking `state` (RFC 6749 section 4.1.2, 10.12). */
function authorizationCode(callbackUrl, expectedState) {
    const params = new URL(callbackUrl).searchParams;
    if (params.get('error')) {
        throw new Error(`authorization failed: ${params.get('error')} ${params.get('error_description') ?? ''}`);
    }
    if (params.get('state') !== expectedState) throw new Error('state mismatch in the authorization response');
    const code = params.get('code');
    if (!code) throw new Error('no code in the authorization response');
    return code;
}

/** Connect (authorizing through the test when the SDK asks for it) and call the tool once. */
async function callTool(provider) {
    for (let attempt = 0; attempt < 2; attempt++) {
        const client = new Client({ name: 'dcr-gateway-e2e-ts', version: '0.0.0' });
        const transport = new StreamableHTTPClientTransport(new URL(options.server), { authProvider: provider });
        try {
            await client.connect(transport);
        } catch (error) {
            if (!(error instanceof UnauthorizedError) || attempt > 0) throw error;
            const { callback_url: callbackUrl } = await readMessage();
            await transport.finishAuth(authorizationCode(callbackUrl, provider.expectedState));
            continue;
        }
        try {
            const result = await client.callTool({ name: options.tool, arguments: {} });
            if (result.isError) throw new Error(`tool error: ${JSON.stringify(result.content)}`);
            return result.structuredContent ?? JSON.parse(result.content[0].text);
        } finally {
            await client.close();
        }
    }
    throw new Error('not authorized after a completed authorization');
}

async function main() {
    const clientMetadata = {
        client_name: options['client-name'],
        redirect_uris: [options['redirect-uri']],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: options['auth-method'],
        ...(options.scope ? { scope: options.scope } : {})
    };
    const provider = new HeadlessOAuthClientProvider(
        options['redirect-uri'],
        clientMetadata,
        options['client-metadata-url']
    );
    const first = await callTool(provider);
    const firstTokens = provider.tokens();
    const firstAccessToken = firstTokens.access_token;
    provider.expireAccessToken();
    const second = await callTool(provider);
    const client = provider.clientInformation();
    // Secrets travel apart from what the test asserts on, so a failed assertion never prints one.
    const secrets = [client.client_secret, ...provider.savedTokens.flatMap(t => [t.access_token, t.refresh_token])];
    emit({
        event: 'result',
        client: {
            client_id: client.client_id,
            issuer: client.issuer,
            token_endpoint_auth_method: client.token_endpoint_auth_method,
            scope: client.scope,
            redirect_uris: client.redirect_uris,
            has_client_secret: Boolean(client.client_secret)
        },
        authorization_urls: provider.authorizationUrls,
        tokens: provider.savedTokens.map(tokens => ({
            issuer: tokens.issuer,
            scope: tokens.scope,
            has_refresh_token: Boolean(tokens.refresh_token)
        })),
        access_token_changed: provider.savedTokens.length === 2 && firstAccessToken !== provider.savedTokens[1].access_token,
        refreshed: Boolean(firstTokens.refresh_token) && provider.authorizationUrls.length === 1,
        tool: [first, second],
        secrets: secrets.filter(Boolean)
    });
}

main().then(
    () => process.exit(0),
    error => {
        emit({ event: 'error', message: String(error?.stack ?? error) });
        process.exit(1);
    }
);
