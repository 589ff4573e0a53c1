"""Sends one alert with aioapns (someone else's APNs client) to the fake APNs.

Usage: aioapns_send.py HOST PORT CA_PEM P8_KEY_FILE KEY_ID TEAM_ID TOPIC TOKEN
Prints the result; exits 0 only when aioapns reports success. aioapns matches every reply to
its request by the `apns-id` header, so a fake that does not echo it never completes the send.
"""
import asyncio
import ssl
import sys

import aioapns.connection as conn
from aioapns import APNs, NotificationRequest, PushType

host, port, ca, key_file, key_id, team_id, topic, token = sys.argv[1:9]
# aioapns only knows Apple's hosts; point its sandbox protocol at the fake.
conn.APNsDevelopmentClientProtocol.APNS_SERVER = host
conn.APNsDevelopmentClientProtocol.APNS_PORT = int(port)


async def main() -> int:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    with open(key_file) as f:
        key = f.read()
    apns = APNs(key=key, key_id=key_id, team_id=team_id, topic=topic,
                use_sandbox=True, ssl_context=ctx, max_connections=1)
    req = NotificationRequest(device_token=token,
                              message={"aps": {"alert": "sent by aioapns"}},
                              push_type=PushType.ALERT)
    res = await asyncio.wait_for(apns.send_notification(req), 20)
    print(f"successful={res.is_successful} id={res.notification_id} "
          f"status={res.status} description={res.description}")
    return 0 if res.is_successful else 1


sys.exit(asyncio.run(main()))
