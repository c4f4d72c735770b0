"""The path past one machine: collectors publish every record to NATS JetStream
(:mod:`.publisher`), Labs, the API server and the history writer read it on any host
(:mod:`.reader`); :mod:`.encoding` is what goes on the wire, :mod:`.nats_server` a real
``nats-server`` for the demo and the tests."""
