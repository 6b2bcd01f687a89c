// An MCP client built from the MCP TypeScript SDK (@modelcontextprotocol/sdk),
// run by test/e2e/mcp_test.go against a gateway path through nginx:
//
//  1. the MCP initialize request without a token, as a client sends it first:
//     the 401's WWW-Authenticate is read with the SDK's
//     extractWWWAuthenticateParams (resource_metadata, scope);
//  2. the protected resource metadata is fetched with the SDK's
//     discoverOAuthProtectedResourceMetadata from that URL (a public path);
//  3. with the token (MCP_TOKEN, what the authorization server the metadata
//     names would issue), the SDK's Client connects through its
//     StreamableHTTPClientTransport.
//
// It prints one JSON object with what it saw; the Go test checks it.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { extractWWWAuthenticateParams, discoverOAuthProtectedResourceMetadata } from '@modelcontextprotocol/sdk/client/auth.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';

const serverUrl = new URL(process.argv[2]);
const out = {};

const first = await fetch(serverUrl, {
  method: 'POST',
  headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
  body: JSON.stringify({
    jsonrpc: '2.0', id: 0, method: 'initialize',
    params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'registry-auth-e2e', version: '1.0.0' } },
  }),
});
await first.body?.cancel();
out.status = first.status;
out.wwwAuthenticate = first.headers.get('www-authenticate');
const params = extractWWWAuthenticateParams(first);
out.resourceMetadataUrl = params.resourceMetadataUrl?.href ?? null;
out.scope = params.scope ?? null;

out.metadata = await discoverOAuthProtectedResourceMetadata(serverUrl, { resourceMetadataUrl: params.resourceMetadataUrl });

const transport = new StreamableHTTPClientTransport(serverUrl, {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_TOKEN}` } },
});
const client = new Client({ name: 'registry-auth-e2e', version: '1.0.0' });
await client.connect(transport);
out.serverVersion = client.getServerVersion();
await client.close();

console.log(JSON.stringify(out));
