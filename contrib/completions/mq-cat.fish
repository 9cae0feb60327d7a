complete -c mq-cat -l completions -d 'Print a completion script for SHELL (bash, zsh, fish, ...) and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c mq-cat -s f -l follow -d 'Wait for new messages after the retained history, until every named stream is removed (the default)'
complete -c mq-cat -s n -l no-follow -d 'Stop at the end of the retained history (what `order` holds when it gets there)'
complete -c mq-cat -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mq-cat -s V -l version -d 'Print version'
