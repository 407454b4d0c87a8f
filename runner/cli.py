def main(argv=None) -> int:
    print("sonic-runner: not built yet")
    return 1
