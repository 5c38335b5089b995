"""Signed webhooks delivered from the ``webhook_deliveries`` outbox (docs/webhooks.md).

envelope: the body and its signature; destination: http(s) + SSRF checks at send time; config: a
workspace's URL and encrypted secret; outbox: enqueue, claim, backoff; delivery: one HTTP attempt per
claimed row; dispatcher: immediate, off-the-hot-path attempts right after an enqueue.
"""
