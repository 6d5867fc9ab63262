"""Throwaway TLS material for the web config tests (the `cryptography` package, which ansible-core
requires, so no openssl binary is needed)."""
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory, name, cert, key):
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def _certificate(subject, issuer, public_key, signing_key, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = (builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return builder.sign(signing_key, hashes.SHA256())


def self_signed(directory, name):
    """A self-signed server certificate for localhost/127.0.0.1: (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _write(directory, name, _certificate(_name("localhost"), _name("localhost"), key.public_key(), key, False), key)


def ca_and_leaf(directory):
    """A CA and a server certificate for localhost/127.0.0.1 signed by it: {ca, cert, key} paths."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(_name("aiplatform test CA"), _name("aiplatform test CA"), ca_key.public_key(), ca_key, True)
    ca_path, _ = _write(directory, "ca", ca_cert, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(_name("localhost"), ca_cert.subject, key.public_key(), ca_key, False)
    cert_path, key_path = _write(directory, "alertmanager", leaf, key)
    return {"ca": ca_path, "cert": cert_path, "key": key_path}
