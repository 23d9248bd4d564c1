#!/usr/bin/env python3
"""A real oslo.messaging notification listener, as Ceilometer runs one.

Usage: oslo_listener.py TRANSPORT_URL EXCHANGE TOPIC
Prints one JSON line per notification heard ({priority, publisher_id, event_type, payload, metadata}),
and "ready" once its queues are declared and bound.
"""
import json
import sys
import threading
import time

from oslo_config import cfg
import oslo_messaging


class Endpoint:
    # The threading executor calls endpoints from several threads; print() writes the line and its newline
    # separately, so two notifications could share a line. One write per line, one writer at a time.
    _lock = threading.Lock()

    def _print(self, priority, publisher_id, event_type, payload, metadata):
        line = json.dumps({"priority": priority, "publisher_id": publisher_id, "event_type": event_type,
                           "payload": payload, "metadata": metadata}) + "\n"
        with self._lock:
            sys.stdout.write(line)
            sys.stdout.flush()
        return oslo_messaging.NotificationResult.HANDLED

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        return self._print("INFO", publisher_id, event_type, payload, metadata)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        return self._print("ERROR", publisher_id, event_type, payload, metadata)


def main():
    url, exchange, topic = sys.argv[1:4]
    transport = oslo_messaging.get_notification_transport(cfg.CONF, url=url)
    targets = [oslo_messaging.Target(topic=topic, exchange=exchange)]
    listener = oslo_messaging.get_notification_listener(transport, targets, [Endpoint()], executor="threading")
    listener.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
        listener.wait()


if __name__ == "__main__":
    main()
