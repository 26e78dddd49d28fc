"""A certificate authority the test makes, and certificates it signs, with
Debian's openssl command: nothing is fetched, nothing outlives the test's
folder."""
import os
import subprocess


def _openssl(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True, capture_output=True)


def make_ca(d):
    """ca.key and ca.pem in d; returns the CA certificate's path."""
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
              "-subj", "/CN=flare test CA"], d)
    return os.path.join(d, "ca.pem")


def make_cert(d, name, dns, ip="127.0.0.1"):
    """name.key and name.pem for the DNS name dns (and ip), signed by d's
    CA; returns (certificate, key) paths."""
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName = DNS:%s%s\nextendedKeyUsage = serverAuth, clientAuth\n" % (
            dns, ", IP:" + ip if ip else ""))
    _openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + dns], d)
    _openssl(["x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
              "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext], d)
    os.chmod(os.path.join(d, name + ".key"), 0o644)  # servers may run as other users
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
