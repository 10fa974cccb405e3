# bash completion for hookcast (made by `hookcast completions bash`)
_hookcast() {
    local cur prev cmd
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=${COMP_WORDS[1]}
    if ((COMP_CWORD == 1)); then
        mapfile -t COMPREPLY < <(compgen -W 'serve webhook check publish tail runs deliveries token sign send completions man help' -- "$cur")
        return
    fi
    case $cmd in
    serve)
        case $prev in
        --config|-c) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        --hooks) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        --listen|-l) COMPREPLY=(); return ;;
        --state-dir|-d) mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return ;;
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--config --hooks --listen --state-dir --help' -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        ;;
    webhook)
        case $prev in
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--help' -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        ;;
    check)
        case $prev in
        --config|-c) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        --hooks) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--config --hooks --help' -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        ;;
    publish)
        case $prev in
        --event|-e) COMPREPLY=(); return ;;
        --url|-u) COMPREPLY=(); return ;;
        --token|-t) COMPREPLY=(); return ;;
        --token-file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--event --json --retain --url --token --token-file --help' -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        ;;
    tail)
        case $prev in
        --since|-s) COMPREPLY=(); return ;;
        --type) COMPREPLY=(); return ;;
        --where|-w) COMPREPLY=(); return ;;
        --q|-q) COMPREPLY=(); return ;;
        --url|-u) COMPREPLY=(); return ;;
        --token|-t) COMPREPLY=(); return ;;
        --token-file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--since --json --state --type --where --q --url --token --token-file --help' -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        ;;
    runs)
        case $prev in
        --url|-u) COMPREPLY=(); return ;;
        --token|-t) COMPREPLY=(); return ;;
        --token-file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--json --url --token --token-file --help' -- "$cur")
        elif ((COMP_CWORD == 2)); then
            mapfile -t COMPREPLY < <(compgen -W 'list show follow retry cancel' -- "$cur")
        fi
        ;;
    deliveries)
        case $prev in
        --hook) COMPREPLY=(); return ;;
        --url|-u) COMPREPLY=(); return ;;
        --token|-t) COMPREPLY=(); return ;;
        --token-file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--json --hook --url --token --token-file --help' -- "$cur")
        elif ((COMP_CWORD == 2)); then
            mapfile -t COMPREPLY < <(compgen -W 'list show replay' -- "$cur")
        fi
        ;;
    token)
        case $prev in
        --secret-env) COMPREPLY=(); return ;;
        --secret-file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        --alg) mapfile -t COMPREPLY < <(compgen -W 'HS256 HS384 HS512' -- "$cur"); return ;;
        --sub) COMPREPLY=(); return ;;
        --claim) COMPREPLY=(); return ;;
        --ttl) COMPREPLY=(); return ;;
        --aud) COMPREPLY=(); return ;;
        --iss) COMPREPLY=(); return ;;
        --kid) COMPREPLY=(); return ;;
        --subscribe) COMPREPLY=(); return ;;
        --publish) COMPREPLY=(); return ;;
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--secret-env --secret-file --alg --sub --claim --ttl --aud --iss --kid --subscribe --publish --help' -- "$cur")
        elif ((COMP_CWORD == 2)); then
            mapfile -t COMPREPLY < <(compgen -W 'new hash jwt' -- "$cur")
        fi
        ;;
    sign)
        case $prev in
        --provider|-p) mapfile -t COMPREPLY < <(compgen -W 'github gitlab gitea forgejo bitbucket stripe slack standard-webhooks hmac' -- "$cur"); return ;;
        --secret|-s) COMPREPLY=(); return ;;
        --event|-e) COMPREPLY=(); return ;;
        --id) COMPREPLY=(); return ;;
        --content-type) COMPREPLY=(); return ;;
        --hmac-header) COMPREPLY=(); return ;;
        --hmac-algorithm) mapfile -t COMPREPLY < <(compgen -W 'sha1 sha256 sha512' -- "$cur"); return ;;
        --hmac-encoding) mapfile -t COMPREPLY < <(compgen -W 'hex base64' -- "$cur"); return ;;
        --hmac-prefix) COMPREPLY=(); return ;;
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--provider --secret --event --id --content-type --hmac-header --hmac-algorithm --hmac-encoding --hmac-prefix --help' -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        ;;
    send)
        case $prev in
        --provider|-p) mapfile -t COMPREPLY < <(compgen -W 'github gitlab gitea forgejo bitbucket stripe slack standard-webhooks hmac' -- "$cur"); return ;;
        --secret|-s) COMPREPLY=(); return ;;
        --event|-e) COMPREPLY=(); return ;;
        --id) COMPREPLY=(); return ;;
        --content-type) COMPREPLY=(); return ;;
        --hmac-header) COMPREPLY=(); return ;;
        --hmac-algorithm) mapfile -t COMPREPLY < <(compgen -W 'sha1 sha256 sha512' -- "$cur"); return ;;
        --hmac-encoding) mapfile -t COMPREPLY < <(compgen -W 'hex base64' -- "$cur"); return ;;
        --hmac-prefix) COMPREPLY=(); return ;;
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--provider --secret --event --id --content-type --hmac-header --hmac-algorithm --hmac-encoding --hmac-prefix --help' -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        ;;
    completions)
        case $prev in
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--help' -- "$cur")
        elif ((COMP_CWORD == 2)); then
            mapfile -t COMPREPLY < <(compgen -W 'bash zsh fish' -- "$cur")
        fi
        ;;
    man)
        case $prev in
        esac
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W '--help' -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        ;;
    help)
        mapfile -t COMPREPLY < <(compgen -W 'serve webhook check publish tail runs deliveries token sign send completions man' -- "$cur")
        ;;
    esac
}
complete -F _hookcast hookcast
