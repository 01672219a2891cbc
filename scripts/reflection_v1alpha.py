"""Lists a node's gRPC services over grpc.reflection.v1alpha, as Python's
grpcio-reflection client does, and fails unless tenure.v1.Lock and
tenure.v1.Admin are among them. Usage: reflection_v1alpha.py HOST:PORT"""
import sys
import time

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    addr = sys.argv[1]
    deadline = time.monotonic() + 30
    while True:
        try:
            with grpc.insecure_channel(addr) as channel:
                services = sorted(ProtoReflectionDescriptorDatabase(channel).get_services())
                break
        except grpc.RpcError as e:
            if time.monotonic() > deadline:
                print(f"no reflection answer from {addr}: {e}", file=sys.stderr)
                return 1
            time.sleep(0.3)
    print("grpc.reflection.v1alpha lists: " + ", ".join(services))
    missing = {"tenure.v1.Lock", "tenure.v1.Admin"} - set(services)
    if missing:
        print(f"missing: {sorted(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
