complete -c mqfs -s o -d 'Mount options, comma-separated (may be repeated)' -r
complete -c mqfs -l completions -d 'Print a completion script for SHELL (bash, zsh, fish, ...) and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c mqfs -s f -d 'Stay in the foreground and log to stderr'
complete -c mqfs -s d -d 'Log debugging detail and stay in the foreground (-o debug only logs more)'
complete -c mqfs -s h -l help -d 'Print help'
complete -c mqfs -s V -l version -d 'Print version'
