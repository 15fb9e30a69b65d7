"""The link between gates: a venue, not a box.

Gates on a production LAN share what they see through an MQTT broker
(mosquitto), so each door can stop a copied pass used at another door
moments ago, knows who left through any door, and can count people against
a zone's capacity; the security chief watches it live. The decision never
waits on the network: without the link a gate decides as it always did.

    messages.py   what gates say to each other: build, sign, check (pure)
    bus.py        the MQTT edge: paho-mqtt, and a broker in memory for tests
    store.py      peers.db: peers' scans, acknowledgements, refusals
    link.py       the link's thread: publish from the log, take peers' scans, catch up
    door.py       the venue as the scan loop sees it (the view, the status)
    live.py       the security chief's live view (scanner live)

The pure rules (who is where, copies, capacity) are in
:mod:`scanner.core.venue_view`.
"""
