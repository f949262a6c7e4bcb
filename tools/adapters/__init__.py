"""REST adapters for real platforms: a Zendesk-style helpdesk, an Okta-style identity provider
and a signed webhook to the support platform. Each makes one attempt per call through
`tools.http.HttpService`; retries, timeouts and deduplication belong to the executor."""
