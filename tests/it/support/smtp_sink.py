#!/usr/bin/python3
"""SMTP sink for casegate's integration tests (driven by tests/it/support/mailstack/smtp_sink.rs).

A real SMTP server (aiosmtpd) on 127.0.0.1 that stores every accepted message in
DIR/messages/ as NNNNNN.eml (the raw DATA, CRLF line endings, dot-unstuffed) plus a
NNNNNN.json sidecar with the envelope, and can also hand it on to Dovecot's LMTP.

    smtp_sink.py --dir DIR --port PORT [--tls none|starttls|implicit --cert C --key K]
                 [--auth USER:PASS] [--lmtp PORT] [--parent-pid PID]

Fault injection: before every transaction the sink re-reads DIR/control.json, written
by the test at run time:
    {"seq": 3, "mode": "accept"}
    {"seq": 4, "mode": "tempfail", "count": 2}          451 after DATA, next 2 transactions
    {"seq": 5, "mode": "reject_rcpt", "recipients": ["a@b"]}   550 at RCPT TO for those
    {"seq": 6, "mode": "drop", "count": 1}              close the connection after DATA
"seq" identifies one instruction: how many transactions it has used up is kept in
DIR/control.used, so a restarted sink continues the count instead of starting over.
Messages that get a fault are not stored.

Prints "READY <port>" on stdout once listening; exits on SIGTERM/SIGINT, and by itself
when its parent (the test process) goes away, so a killed test run leaves no server behind.
"""
import argparse
import asyncio
import json
import logging
import os
import signal
import smtplib
import socket
import ssl
import sys
import time
import warnings

# aiosmtpd counts only STARTTLS as TLS, so with implicit TLS it warns that AUTH runs
# without TLS, and its own AUTH code trips its login_data deprecation: noise in the log.
warnings.filterwarnings('ignore', message='Requiring AUTH while not requiring TLS')
logging.getLogger('mail.log').addFilter(
    lambda record: not any(noise in record.getMessage() for noise in (
        'auth_require_tls == False', 'Session.login_data is deprecated')))

from aiosmtpd.controller import Controller  # noqa: E402 (after the filters above)
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword  # noqa: E402


class TolerantSMTP(SMTP):
    # Dovecot's submission relay sends "MAIL FROM:<x> AUTH=<user>" (RFC 4954) and stock
    # aiosmtpd answers 555 to any MAIL parameter it does not know: drop AUTH= here.
    def _getparams(self, params):
        result = super()._getparams(params)
        if result is not None:
            result.pop('AUTH', None)
        return result


class TolerantController(Controller):
    def factory(self):
        return TolerantSMTP(self.handler, **self.SMTP_kwargs)


def log(message):
    # One line per decision, so a failing test's panic (which shows this log) says why.
    print(time.strftime('%H:%M:%S'), message, file=sys.stderr, flush=True)


def _write_atomically(path, data):
    # Write then rename, so the test never reads a half-written file.
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)


class Handler:
    def __init__(self, directory, lmtp_port):
        self.dir = directory
        self.messages = os.path.join(directory, 'messages')
        os.makedirs(self.messages, exist_ok=True)
        self.lmtp_port = lmtp_port
        # Continue numbering after a restart on the same directory.
        self.next_number = 1 + sum(1 for n in os.listdir(self.messages) if n.endswith('.json'))

    def control(self):
        try:
            with open(os.path.join(self.dir, 'control.json'), 'rb') as f:
                return json.load(f)
        except FileNotFoundError:
            return {'seq': 0, 'mode': 'accept'}

    def take_one(self, control):
        """Use up one transaction of a counted fault; False once the count is spent."""
        used_path = os.path.join(self.dir, 'control.used')
        seq, used = 0, 0
        try:
            with open(used_path) as f:
                seq, used = (int(x) for x in f.read().split())
        except (FileNotFoundError, ValueError):
            pass
        if seq != control['seq']:
            used = 0
        if used >= int(control.get('count', 0)):
            return False
        _write_atomically(used_path, f"{control['seq']} {used + 1}\n".encode())
        return True

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # The control file is read once per transaction, at MAIL FROM.
        envelope.fault = self.control()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return '250 OK'

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        fault = getattr(envelope, 'fault', None) or {}
        if fault.get('mode') == 'reject_rcpt':
            rejected = {r.lower() for r in fault.get('recipients', [])}
            if address.lower() in rejected:
                log(f'fault reject_rcpt: 550 for <{address}>')
                return f'550 5.1.1 <{address}>: Recipient address rejected (test fault)'
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return '250 OK'

    async def handle_DATA(self, server, session, envelope):
        fault = getattr(envelope, 'fault', None) or {}
        mode = fault.get('mode')
        if mode == 'tempfail' and self.take_one(fault):
            log(f'fault tempfail: 451 for <{envelope.mail_from}> -> {envelope.rcpt_tos}')
            return '451 4.3.0 Temporary failure (test fault), try again later'
        if mode == 'drop' and self.take_one(fault):
            # No reply at all: the client sees the connection die after sending DATA.
            log(f'fault drop: connection closed for <{envelope.mail_from}> -> {envelope.rcpt_tos}')
            server.transport.abort()
            return '421 4.4.2 dropped (test fault)'
        data = envelope.original_content
        if self.lmtp_port:
            try:
                # Blocking smtplib in a thread keeps the event loop free.
                await asyncio.to_thread(_lmtp_deliver, self.lmtp_port, envelope.mail_from,
                                        envelope.rcpt_tos, data)
            except smtplib.SMTPRecipientsRefused as e:
                code, msg = next(iter(e.recipients.values()))
                log(f'LMTP refused {envelope.rcpt_tos}: {code} {msg!r}')
                return f'{code} {msg.decode(errors="replace")}'
            except smtplib.SMTPResponseException as e:
                log(f'LMTP refused: {e.smtp_code} {e.smtp_error!r}')
                return f'{e.smtp_code} {e.smtp_error.decode(errors="replace")}'
            except OSError as e:
                log(f'LMTP relay failed: {e}')
                return f'451 4.4.0 LMTP relay failed: {e}'
        number = self.next_number
        self.next_number += 1
        base = os.path.join(self.messages, f'{number:06}')
        _write_atomically(base + '.eml', data)
        envelope_json = {'mail_from': envelope.mail_from, 'rcpt_to': envelope.rcpt_tos,
                         'mail_options': envelope.mail_options}
        # The sidecar is written last: its presence means the message is complete.
        _write_atomically(base + '.json', json.dumps(envelope_json).encode())
        log(f'stored {number:06}: <{envelope.mail_from}> -> {envelope.rcpt_tos}, {len(data)} bytes'
            + (' (also delivered by LMTP)' if self.lmtp_port else ''))
        return f'250 2.0.0 OK stored as {number:06}'


def _lmtp_deliver(port, mail_from, rcpts, data):
    with smtplib.LMTP('127.0.0.1', port) as lmtp:
        options = ['BODY=8BITMIME'] if not data.isascii() else []
        return lmtp.sendmail(mail_from, rcpts, data, mail_options=options)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dir', required=True)
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--tls', choices=['none', 'starttls', 'implicit'], default='none')
    ap.add_argument('--cert')
    ap.add_argument('--key')
    ap.add_argument('--auth', help='USER:PASS; AUTH becomes mandatory')
    ap.add_argument('--lmtp', type=int, help='port of Dovecot LMTP on 127.0.0.1')
    ap.add_argument('--parent-pid', type=int,
                    help='exit when this process is no longer our parent')
    a = ap.parse_args()

    kw = dict(hostname='127.0.0.1', port=a.port, server_hostname='localhost',
              enable_SMTPUTF8=True)
    if a.tls != 'none':
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        if a.tls == 'implicit':
            kw['ssl_context'] = ctx
        else:
            kw['tls_context'] = ctx
            kw['require_starttls'] = bool(a.auth)
    if a.auth:
        user, password = a.auth.split(':', 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            # handled=False: AuthResult's default (True) means "already answered", so a
            # failed login would get no reply at all and the client would hang.
            return AuthResult(success=ok, handled=False)
        # aiosmtpd counts only STARTTLS as TLS: with implicit TLS, auth_require_tls must be
        # off or AUTH is never offered.
        kw.update(authenticator=authenticator, auth_required=True,
                  auth_require_tls=a.tls == 'starttls')
    else:
        kw.update(auth_require_tls=False)

    # aiosmtpd reports a failed bind only after its 5 s ready_timeout: find out at once
    # (same SO_REUSEADDR as asyncio, so a port in TIME_WAIT after a restart still counts as free).
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(('127.0.0.1', a.port))
    except OSError as e:
        sys.exit(f'cannot listen on 127.0.0.1:{a.port}: {e.strerror}')
    finally:
        probe.close()

    controller = TolerantController(Handler(a.dir, a.lmtp), **kw)
    controller.start()
    print(f'READY {a.port}', flush=True)

    stop = {'now': False}

    def _stop(*_):
        stop['now'] = True
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Given by the parent rather than read here: if it died while we started up, our
    # parent is already init and we would wait for it forever.
    parent = a.parent_pid or os.getppid()
    try:
        while not stop['now'] and os.getppid() == parent:
            time.sleep(0.2)
    finally:
        controller.stop()


if __name__ == '__main__':
    sys.exit(main())
