complete -c mq-call -s t -l timeout -d 'Give up after SECONDS (a decimal number) without a reply: say so, exit 124' -r
complete -c mq-call -l completions -d 'Print a completion script for SHELL (bash, zsh, fish, ...) and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c mq-call -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mq-call -s V -l version -d 'Print version'
