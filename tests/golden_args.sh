# golden_args.sh: sourced by the CLI golden tests (cli_golden.sh, cli_logits.sh,
# cli_quant_odd.sh). golden_args GOLDEN_JSON FIXTURES sets `args` (the golden's image paths) and
# `prompt` (its text, newlines kept: the list travels NUL-separated).
golden_args() {
    mapfile -d '' -t args < <(python3 -c '
import json, sys
g = json.load(open(sys.argv[1]))
for f in g["images"]: sys.stdout.write(sys.argv[2] + "/models/images/" + f + "\0")
sys.stdout.write(g["prompt"] + "\0")' "$1" "$2")
    prompt=${args[-1]}
    unset 'args[-1]'
}
