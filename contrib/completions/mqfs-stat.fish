complete -c mqfs-stat -l completions -d 'Print a completion script for SHELL (bash, zsh, fish, ...) and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c mqfs-stat -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mqfs-stat -s V -l version -d 'Print version'
