complete -c mq-serve -s j -l jobs -d 'Serve N requests at once (N descriptors, N commands)' -r
complete -c mq-serve -l completions -d 'Print a completion script for SHELL (bash, zsh, fish, ...) and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c mq-serve -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mq-serve -s V -l version -d 'Print version'
